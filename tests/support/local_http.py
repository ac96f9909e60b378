"""The one way a fake outside system serves: a `ThreadingHTTPServer` on 127.0.0.1 in a daemon
thread, started and stopped (or used as a context manager) the same way by every fake."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self


class LocalServer:
    """Subclasses give `_handler()`, and `_release_held()` when handlers can be held open."""

    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _bind_port = 0  # 0: any free port; a fixed one lets a test restart a fake where it was

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    def _release_held(self) -> None:
        """Let handler threads a test is holding open finish, so shutdown does not wait."""

    @property
    def port(self) -> int:
        assert self._server is not None, f"{type(self).__name__} is not started"
        return int(self._server.server_address[1])

    def start(self) -> Self:
        server = ThreadingHTTPServer(("127.0.0.1", self._bind_port), self._handler())
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, daemon=True, name=type(self).__name__
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release_held()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
