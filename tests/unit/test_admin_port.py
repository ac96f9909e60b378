"""The worker's admin port: an explicit port or nothing else, or, with no port asked for, the
first free one from the default up, bound once and served on that very socket."""

from __future__ import annotations

import json
import socket
import urllib.request
from collections.abc import Iterator

import pytest

from sisu.config import Settings
from sisu.errors import PortInUse
from sisu.worker import admin, process


@pytest.fixture
def held() -> Iterator[int]:
    """A port some other process listens on."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    try:
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


def port_of(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


def test_a_busy_port_is_skipped_when_searching(held: int) -> None:
    sock = admin.bind_first_free("127.0.0.1", held)
    try:
        assert held < port_of(sock) < held + admin.PORT_SEARCH_SPAN
    finally:
        sock.close()


def test_a_busy_explicit_port_is_port_in_use(held: int) -> None:
    with pytest.raises(PortInUse) as caught:
        admin.bind("127.0.0.1", held)
    assert caught.value.details == {"port": held}


def test_no_free_port_in_the_span_is_port_in_use(held: int) -> None:
    with pytest.raises(PortInUse):
        admin.bind_first_free("127.0.0.1", held, span=1)


def test_admin_port_variable_is_explicit(held: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADMIN_PORT", str(held))
    with pytest.raises(PortInUse):
        process.bind_admin_port("127.0.0.1", None, Settings())


def test_flag_is_explicit_and_wins_over_the_variable(
    held: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ADMIN_PORT", raising=False)
    monkeypatch.delenv("SISU_ADMIN_PORT", raising=False)
    with pytest.raises(PortInUse):
        process.bind_admin_port("127.0.0.1", held, Settings())


def test_unset_searches_from_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ADMIN_PORT", raising=False)
    monkeypatch.delenv("SISU_ADMIN_PORT", raising=False)
    settings = Settings()
    sock, port = process.bind_admin_port("127.0.0.1", None, settings)
    try:
        assert port == port_of(sock)
        assert settings.admin_port <= port < settings.admin_port + admin.PORT_SEARCH_SPAN
    finally:
        sock.close()


def test_port_zero_binds_any_port_and_has_no_stable_identity() -> None:
    sock, port = process.bind_admin_port("127.0.0.1", 0, Settings())
    try:
        assert port == 0
        assert port_of(sock) > 0
    finally:
        sock.close()


def test_the_server_answers_on_the_socket_handed_to_it(held: int) -> None:
    sock = admin.bind_first_free("127.0.0.1", held)
    server = admin.serve("127.0.0.1", 0, lambda: {"ok": True, "who": "me"}, sock=sock)
    try:
        assert server.server_port == port_of(sock)
        url = f"http://127.0.0.1:{server.server_port}/healthz"
        with urllib.request.urlopen(url, timeout=5) as response:
            assert json.loads(response.read()) == {"ok": True, "who": "me"}
    finally:
        server.shutdown()
        server.server_close()
