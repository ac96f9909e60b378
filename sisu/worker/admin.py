"""The worker's admin endpoint on the admin port: `GET /healthz`, and `GET /metrics` for
Prometheus (stdlib, no web framework)."""

from __future__ import annotations

import errno
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sisu.errors import PortInUse, WorkerFailed
from sisu.metrics import CONTENT_TYPE


def serve(
    host: str,
    port: int,
    health: Callable[[], dict[str, Any]],
    metrics_page: Callable[[], bytes] | None = None,
) -> ThreadingHTTPServer:
    """Start the admin server in a daemon thread; returns it (its bound port is `server_port`).
    `metrics_page` renders `/metrics` (Prometheus text); without it, that route is a 404."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            if path == "/metrics" and metrics_page is not None:
                self._send(200, metrics_page(), CONTENT_TYPE)
                return
            if path == "/healthz":
                body = health()
                status = 200 if body.get("ok") else 503
            else:
                body = {"error": "not_found", "message": f"no route {self.path}", "details": None}
                status = 404
            self._send(status, json.dumps(body).encode(), "application/json")

        def _send(self, status: int, data: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # health probes and scrapes are not worth a log line each

    try:
        server = ThreadingHTTPServer((host, port), Handler)
    except OSError as exc:
        busy = exc.errno == errno.EADDRINUSE
        raise (PortInUse if busy else WorkerFailed)(
            f"cannot bind the admin port {host}:{port}: {exc.strerror}; is another worker "
            "using it? Pass --admin-port (or ADMIN_PORT)",
            details={"port": port},
        ) from exc
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="sisu-admin", daemon=True).start()
    return server
