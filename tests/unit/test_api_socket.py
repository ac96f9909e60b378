"""The api-shim's listening socket: connections it accepts send small writes at once (no Nagle),
or a kept-alive client waits out its own delayed ACK, 40 ms, on every request after the first
(a response goes out as two writes, its head and its body)."""

from __future__ import annotations

import socket

from sisu.api.server import bind


def test_accepted_connections_have_tcp_nodelay() -> None:
    listener = bind("127.0.0.1", 0)
    try:
        assert listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        with socket.create_connection(listener.getsockname()[:2], timeout=5):
            accepted, _ = listener.accept()
            with accepted:
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        listener.close()
