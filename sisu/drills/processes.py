"""Real `sisu worker` subprocesses for drills and demos: start, SIGKILL, SIGTERM, log tails."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, TypeVar

from sisu.errors import WorkerFailed

T = TypeVar("T")


@dataclass
class WorkerProcess:
    """One `sisu worker` child. Its output goes to `log_path`, never to the operator's terminal."""

    url: str
    executor_id: str
    app_version: str
    log_path: Path
    queues: tuple[str, ...] = ()
    admin_port: int = 0
    concurrency: int | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    extra_args: tuple[str, ...] = ()
    # Options of `sisu` itself, before the command (`-v`).
    cli_args: tuple[str, ...] = ()
    # True: start from the environment without its SISU_*/DBOS__* settings, as a worker on
    # another machine would (tests); False: inherit the operator's configuration.
    clean_env: bool = False
    proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    def start(self) -> WorkerProcess:
        cmd = [
            sys.executable, "-m", "sisu", *self.cli_args, "worker",
            "--executor-id", self.executor_id,
            "--app-version", self.app_version,
            "--admin-port", str(self.admin_port),
            *self.extra_args,
        ]  # fmt: skip
        for q in self.queues:
            cmd += ["--queue", q]
        if self.concurrency:
            cmd += ["--concurrency", str(self.concurrency)]
        base = {
            k: v
            for k, v in os.environ.items()
            if not (self.clean_env and k.startswith(("SISU_", "DBOS__")))
        }
        env = {**base, "SISU_DATABASE_URL": self.url, **self.extra_env}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        # A session of its own: the operator's Ctrl-C reaches the drill, which then stops its
        # workers deliberately, instead of reaching the workers at random.
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
            env=env, start_new_session=True,
        )  # fmt: skip
        return self

    def restart(self) -> WorkerProcess:
        """A new process with this one's identity and settings, started: what an operator does
        after a crash (the same executor id recovers the crashed process's work)."""
        return replace(self, proc=None, _log=None).start()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no cleanup, no goodbye — what a crash looks like."""
        if self.alive():
            assert self.proc is not None
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._close_log()

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL if it does not exit within `timeout`."""
        if self.proc is None:
            return None
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_log()
        return self.proc.returncode

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def wait_for(
    what: str,
    probe: Callable[[], T | None],
    *,
    timeout: float,
    worker: WorkerProcess | None = None,
    interval: float = 0.02,
) -> T:
    """Poll `probe` until it returns a value; fail early if `worker` dies meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None:
            return value
        if worker is not None and not worker.alive():
            code = worker.proc.returncode if worker.proc is not None else None
            how = f"was killed by signal {-code}" if code and code < 0 else f"exited ({code})"
            raise WorkerFailed(
                f"worker {worker.executor_id} {how} while waiting for {what}; its log "
                f"({worker.log_path}) ends with:\n{worker.log_tail()}",
                details={"executorId": worker.executor_id, "returncode": code},
            )
        if time.monotonic() > deadline:
            raise WorkerFailed(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
