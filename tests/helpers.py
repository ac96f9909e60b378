"""Helpers shared by the test tiers: running the installed `sisu`, reading rows."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pexpect
import psycopg
from psycopg.rows import dict_row

SISU = str(Path(sys.executable).parent / "sisu")


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


def rows(url: str, query: str, params: Any = None) -> list[dict[str, Any]]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(query, params).fetchall()


def scalar(url: str, query: str, params: Any = None) -> Any:
    with psycopg.connect(url) as conn:
        row = conn.execute(query, params).fetchone()
        return row[0] if row else None


def table_counts(url: str, tables: list[str]) -> dict[str, int]:
    return {t: scalar(url, f"SELECT count(*) FROM {t}") for t in tables}
