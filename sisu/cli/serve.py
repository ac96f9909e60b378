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
    from sisu.api.server import serve as run_server
    from sisu.cli._output import info
    from sisu.cli._settings import database_url, settings

    s = settings()
    bind_port = s.port if port is None else port
    url = database_url(s)
    info(f"api-shim on http://{host}:{bind_port} (OpenAPI at /openapi.json)")
    run_server(url, s, host=host, port=bind_port, api_token=s.api_token)
