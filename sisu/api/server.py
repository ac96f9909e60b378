"""`sisu serve`: bind the api-shim's socket, then run the app under uvicorn on it."""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Callable

from sisu.config import Settings
from sisu.errors import PortInUse, SisuError, ValidationFailed
from sisu.service.backend import Backend


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, api_token: str | None) -> None:
    if not is_loopback(host) and not api_token:
        raise ValidationFailed(
            f"refusing to bind {host}: a non-loopback address needs SISU_API_TOKEN set, and then "
            "every request must carry `Authorization: Bearer <token>`",
            details={"host": host},
        )


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, bound here rather than by uvicorn: a busy port is one
    clean error before anything is announced, and no other process can take the port between
    a check and uvicorn's own bind."""
    # The same choices uvicorn makes when it binds (uvicorn.Config.bind_socket).
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit it. Without it, a response written in two parts (its
        # head, then its body) on a kept-alive connection waits for the client's delayed ACK:
        # 40 ms added to every request after a connection's first (asyncio sets it only on
        # listeners it binds itself).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(
                f"cannot bind the api-shim to {host}:{port}: {exc.strerror}; another process "
                "listens there (`sisu doctor` names it). Pass --port (or PORT)",
                details={"host": host, "port": port},
            ) from exc
        raise ValidationFailed(
            f"cannot bind the api-shim to {host}:{port}: {exc.strerror or exc}",
            details={"host": host, "port": port},
        ) from exc
    return sock


def serve(
    url: str,
    settings: Settings,
    *,
    sock: socket.socket,
    api_token: str | None,
    announce: Callable[[str], None] = lambda _: None,
    access_log: bool = False,
) -> None:
    """Serve on `sock` (from `bind`) until stopped; `announce` gets the base URL once the app
    is built, just before uvicorn starts accepting."""
    # What the service layer imports lazily (to keep the CLI fast) is imported here, before the
    # first request: concurrent first requests importing one module on several threads at once
    # met it half-initialised and answered 500.
    import sqlalchemy.exc  # noqa: F401
    import uvicorn

    import sisu.compat  # noqa: F401
    from sisu.api.app import create_app

    backend = Backend.from_settings(url, settings, pool_size=10)
    try:
        app = create_app(backend, settings, api_token=api_token)
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        announce(f"http://{shown}:{port}")
        # log_config=None: uvicorn installs no handlers of its own, so its records reach the
        # process's one handler (sisu.logs) like every other.
        server = uvicorn.Server(
            uvicorn.Config(
                app,
                log_config=None,
                log_level="info" if access_log else "warning",
                access_log=access_log,
            )
        )
        server.run(sockets=[sock])
        if not server.started:
            raise SisuError("the api-shim did not start (see the messages above)")
    finally:
        backend.close()
