"""`sisu serve`: the api-shim (HTTP)."""

from __future__ import annotations

import typer


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind."),
    port: int = typer.Option(
        None, "--port", help="Port to bind (env PORT, default 3001).", show_default=False
    ),
) -> None:
    """Run the HTTP api-shim.

    It validates, writes intents and runs, and enqueues; it never executes workflows (run
    `sisu worker` for that). A non-loopback --host requires SISU_API_TOKEN."""
    from sisu.api import server
    from sisu.cli._output import info
    from sisu.cli._settings import database_url, settings

    s = settings()
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
            announce=lambda base: info(f"api-shim on {base} (OpenAPI at /openapi.json)"),
        )
    finally:
        sock.close()
