"""The api-shim: validates, writes intent and run rows, enqueues. Never imports sisu.workflow."""
