"""`sisu serve`: the api-shim (HTTP)."""

from __future__ import annotations

import typer

from sisu.cli import _logs


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind."),
    port: int = typer.Option(
        None, "--port", help="Port to bind (env PORT, default 3001).", show_default=False
    ),
    log_format: str = _logs.log_format_option(),
) -> None:
    """Run the HTTP api-shim.

    It validates, writes intents and runs, and enqueues; it never executes workflows (run
    `sisu worker` for that). A non-loopback --host requires SISU_API_TOKEN."""
    import logging

    from sisu.api import server
    from sisu.cli._output import state
    from sisu.cli._settings import database_url, settings

    s = settings()
    _logs.setup_logs(s, log_format)
    log = logging.getLogger("sisu.api")
    server.check_bind(host, s.api_token)
    # The port first: a busy one fails at once, before the database is started or migrated.
    sock = server.bind(host, s.port if port is None else port)
    try:
        url = database_url(s)
        server.serve(
            url,
            s,
            sock=sock,
            api_token=s.api_token,
            announce=lambda base: log.info("api-shim on %s (OpenAPI at /openapi.json)", base),
            # Under -v, a line per request (uvicorn's access log, in the same format).
            access_log=state.verbose,
        )
    finally:
        sock.close()
