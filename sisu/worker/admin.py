"""The worker's admin endpoint on the admin port: `GET /healthz`, and `GET /metrics` for
Prometheus (stdlib, no web framework)."""

from __future__ import annotations

import errno
import json
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sisu.errors import PortInUse, WorkerFailed
from sisu.metrics import CONTENT_TYPE

# How many ports, from the default up, a worker without a port flag tries for its admin port.
PORT_SEARCH_SPAN = 100


def _listening(host: str, port: int) -> socket.socket:
    """A socket listening on host:port, or the OSError of its bind."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # As the stdlib HTTP server does: a restarted worker gets its port back at once, even
        # with connections of its previous life in TIME_WAIT (Linux never lets two listen).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def _refused(host: str, port: int, exc: OSError) -> Exception:
    busy = exc.errno == errno.EADDRINUSE
    return (PortInUse if busy else WorkerFailed)(
        f"cannot bind the admin port {host}:{port}: {exc.strerror}; is another worker "
        "using it? Pass another --admin-port (or ADMIN_PORT), or neither to take the first "
        "free port from 3002 up",
        details={"port": port},
    )


def bind(host: str, port: int) -> socket.socket:
    """The admin socket on exactly host:port (0: any free port), or port_in_use."""
    try:
        return _listening(host, port)
    except OSError as exc:
        raise _refused(host, port, exc) from exc


def bind_first_free(host: str, first: int, span: int = PORT_SEARCH_SPAN) -> socket.socket:
    """The admin socket on the first port of first, first+1, ... that is free. Bound, not
    probed: no other process can take the port between the choice and the server's start, and
    two workers starting at once simply get two ports."""
    last = min(first + span - 1, 65535)
    for port in range(first, last + 1):
        try:
            return _listening(host, port)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise _refused(host, port, exc) from exc
    raise PortInUse(
        f"no free admin port on {host} in {first}-{last}; pass --admin-port (or ADMIN_PORT)",
        details={"host": host, "first": first, "last": last},
    )


def serve(
    host: str,
    port: int,
    health: Callable[[], dict[str, Any]],
    metrics_page: Callable[[], bytes] | None = None,
    *,
    sock: socket.socket | None = None,
) -> ThreadingHTTPServer:
    """Start the admin server in a daemon thread; returns it (its bound port is `server_port`).
    `metrics_page` renders `/metrics` (Prometheus text); without it, that route is a 404.
    Given `sock` (from `bind` or `bind_first_free`), it serves on that socket instead of
    binding host:port."""

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

    if sock is None:
        sock = bind(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    server = ThreadingHTTPServer((bound_host, bound_port), Handler, bind_and_activate=False)
    # Hand the bound socket over (what HTTPServer.server_bind would have set, without its
    # reverse DNS lookup for the name).
    server.socket.close()
    server.socket = sock
    server.server_address = (bound_host, bound_port)
    server.server_name, server.server_port = bound_host, bound_port
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="sisu-admin", daemon=True).start()
    return server
