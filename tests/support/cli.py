"""The installed `sisu` as a child process: with stdout and stderr kept apart, or in a real
pseudo-terminal; and the environment such a child runs in."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pexpect

SISU = str(Path(sys.executable).parent / "sisu")
# Retries happen in the operator tests; a step's first retry waits this long (then doubles).
FAST_BACKOFF = "0.05"


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def run_sisu(args: list[str], env: dict[str, str], timeout: float = 120) -> Result:
    """Run the installed `sisu` with stdout and stderr kept apart (not a terminal)."""
    proc = subprocess.run(
        [SISU, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def spawn_sisu(args: list[str], env: dict[str, str], timeout: float = 120) -> pexpect.spawn:
    """The installed `sisu` in a real pseudo-terminal."""
    return pexpect.spawn(
        SISU, args, env=env, encoding="utf-8", timeout=timeout, dimensions=(50, 200)
    )


def pty_run(args: list[str], env: dict[str, str], timeout: float = 120) -> tuple[int, str]:
    """Run `sisu` in a pty to completion; returns (exit code, everything it showed)."""
    child = spawn_sisu(args, env, timeout)
    child.expect(pexpect.EOF)
    child.close()
    code = child.exitstatus if child.exitstatus is not None else 128 + (child.signalstatus or 0)
    return code, child.before or ""


def sisu_env_for(url: str | None, home: Path, **extra: str) -> dict[str, str]:
    """The environment of a `sisu` child (what the `sisu_env` fixture builds), for any database,
    or none: `url=None` means the embedded server of `home`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SISU_", "DBOS__"))}
    env.update(
        SISU_HOME=str(home),
        NO_COLOR="1",
        COLUMNS="200",
        PYTHONUNBUFFERED="1",
    )
    if url is not None:
        env["SISU_DATABASE_URL"] = url
    env.update(extra)
    return env


def fast_retry_env(url: str, home: Path, **extra: str) -> dict[str, str]:
    """`sisu_env_for(url, home)` with fast step retries."""
    return sisu_env_for(url, home, SISU_STEP_BACKOFF_SECONDS=FAST_BACKOFF, **extra)
