"""The worker's admin endpoint: `GET /healthz` on the admin port (stdlib, no web framework)."""

from __future__ import annotations

import errno
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sisu.errors import PortInUse, WorkerFailed


def serve(host: str, port: int, health: Callable[[], dict[str, Any]]) -> ThreadingHTTPServer:
    """Start the admin server in a daemon thread; returns it (its bound port is `server_port`)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] == "/healthz":
                body = health()
                status = 200 if body.get("ok") else 503
            else:
                body = {"error": "not_found", "message": f"no route {self.path}", "details": None}
                status = 404
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # health probes are not worth a log line each

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
