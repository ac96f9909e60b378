"""Workflow code, run only by workers: pure workflows in `wf/`, I/O steps in `steps/`."""
