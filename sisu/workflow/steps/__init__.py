"""Steps: every clock, file, network and database access of a workflow happens here."""
