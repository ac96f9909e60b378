"""Pure workflows: control flow only (checked by `sisu policy check`)."""
