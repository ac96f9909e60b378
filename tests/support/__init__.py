"""What the test tiers share, one module per subject:

- `cli`: the installed `sisu` as a child (pipes or a real pty) and its environment.
- `db`: rows and scalars, databases cloned from the session template, throwaway homes.
- `polling`: `poll`, the one way a test waits (for a positive signal, failing on timeout).
- `workers`: real `sisu worker` children and their readiness.
- `runs`: runs started through the service layer, their rows, and waits on their status.
- `serve`: a real `sisu serve` child on a free port.
- `runview`: the RunView wire shape and its golden-file normaliser.
- `envelopes`: the error envelope checked one way (`error_of`, `cli_error`), `cli_ok`.
- `paging`, `plans`, `metrics`: seeded histories, EXPLAIN plans, Prometheus pages.
- `fake_openai`, `fake_webhook`, `otlp_receiver`: the outside systems, each a `local_http`
  server on 127.0.0.1.
- `repo_tools_probe`: a subprocess running the repository tools inside a DBOS workflow.
"""
