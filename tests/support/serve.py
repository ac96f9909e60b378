"""A real `sisu serve` child on a free port; its output goes to a file."""

from __future__ import annotations

import signal
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support.cli import SISU
from tests.support.polling import poll


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class ServeProcess:
    """A real `sisu serve` child; its output goes to a file, never to the test's terminal."""

    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        *,
        host: str = "127.0.0.1",
        cli_args: tuple[str, ...] = (),
    ) -> None:
        self.env = env
        self.host = host
        self.cli_args = cli_args  # options of `sisu` itself, before `serve` (`-v`)
        self.port = free_port("0.0.0.0" if host == "0.0.0.0" else host)
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServeProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [SISU, *self.cli_args, "serve", "--host", self.host, "--port", str(self.port)],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        return self

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def wait_responding(
        self, path: str = "/healthz", headers: dict[str, str] | None = None, timeout: float = 30
    ) -> httpx.Response:
        """Wait until the server answers `path` at all (any status); returns that response."""

        def probe() -> httpx.Response | None:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"sisu serve exited {self.proc.returncode}; log tail:\n{self.log_tail()}"
                )
            try:
                return httpx.get(self.base_url + path, headers=headers, timeout=2)
            except httpx.TransportError:
                return None

        return poll("sisu serve to answer", probe, timeout=timeout, interval=0.1)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@contextmanager
def running_serve(
    env: dict[str, str],
    log_path: Path,
    *,
    host: str = "127.0.0.1",
    cli_args: tuple[str, ...] = (),
) -> Iterator[ServeProcess]:
    server = ServeProcess(env, log_path, host=host, cli_args=cli_args)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@contextmanager
def serve_client(
    env: dict[str, str], log_path: Path, *, timeout: float = 10
) -> Iterator[httpx.Client]:
    """An httpx client on a real `sisu serve` child that has answered /healthz with 200."""
    with running_serve(env, log_path) as server:
        first = server.wait_responding("/healthz")
        assert first.status_code == 200, first.text
        with httpx.Client(base_url=server.base_url, timeout=timeout) as client:
            yield client
