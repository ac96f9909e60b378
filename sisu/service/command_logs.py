"""A run's command output, as the sandbox executor wrote it on this machine:
`$SISU_HOME/logs/runs/<runId>/stdout.log` and `stderr.log` (the latest attempt's)."""

from __future__ import annotations

from pathlib import Path

from sisu.config import run_logs_dir
from sisu.errors import NotFound

STREAMS = ("stdout", "stderr")


def paths(home: Path, run_id: str) -> dict[str, Path]:
    folder = run_logs_dir(home) / run_id
    return {stream: folder / f"{stream}.log" for stream in STREAMS}


def existing(home: Path, run_id: str) -> dict[str, Path]:
    """The run's output files, or not_found naming where they were looked for."""
    found = {s: p for s, p in paths(home, run_id).items() if p.is_file()}
    if not found:
        raise NotFound(
            f"no command output for run {run_id} under {run_logs_dir(home)}: the run has not "
            "run a command on a worker with this SISU_HOME (only --executor sandbox writes it)",
            details={"runId": run_id, "looked": str(run_logs_dir(home) / run_id)},
        )
    return found


def tail(path: Path, lines: int, *, max_bytes: int = 64 * 1024) -> str:
    """The last `lines` lines of a file, reading at most its last `max_bytes`."""
    try:
        with path.open("rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except FileNotFoundError:
        return ""
    return "\n".join(data.decode(errors="replace").splitlines()[-lines:])
