"""Retention: which runs `sisu gc` removes — finished ones (succeeded, failed, canceled) last
updated before a cutoff, never a live one — and removing them, in batches: their rows in `app.*`
and `dbos.*`, then their workspace and command output under `$SISU_HOME`."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sisu import names
from sisu.config import run_logs_dir
from sisu.contracts.ops import GcReport
from sisu.db.queries import q
from sisu.errors import ValidationFailed
from sisu.service.backend import Backend, Cursor

# A run in any other status is live (queued, running, waiting_input) or waits for repair
# (retries_exceeded): gc never takes it.
FINISHED = names.GC_STATUSES
BATCH_SIZE = 500
MAX_BATCH_SIZE = 10_000

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_DURATION = re.compile(r"(?:\d+[smhdw])+")
_PART = re.compile(r"(\d+)([smhdw])")
# Far enough back for any retention, near enough for PostgreSQL's interval arithmetic.
_MAX_SECONDS = 100 * 366 * 86_400

# Every table gc removes rows from, in the order they are shown. (It also takes removed runs'
# ids out of app.failovers and app.workers, whose rows are worker history and stay.)
TABLES = (
    "app.intents",
    "app.runs",
    "app.run_steps",
    "app.artifacts",
    "app.opencode_calls",
    "app.human_events",
    "app.mock_receipts",
    "app.deliveries",
    "dbos.workflow_status",
    "dbos.workflow_input",
    "dbos.workflow_output",
    "dbos.operation_outputs",
    "dbos.notifications",
    "dbos.workflow_events",
    "dbos.workflow_events_history",
    "dbos.streams",
    "dbos.datasource_outputs",
)

# The keyset's start: before any run's updated_at.
_FIRST = (datetime(1, 1, 1, tzinfo=UTC), "")


def parse_duration(text: str) -> int:
    """`30d`, `12h`, `90m`, `0s`, `2w`, or a sum such as `1d12h`, in seconds."""
    value = text.strip()
    if not _DURATION.fullmatch(value):
        raise ValidationFailed(
            f"--older-than {text!r} is not a duration: a number and a unit (s, m, h, d, w), "
            "e.g. 30d, 12h, 90m, 0s",
            details=[{"field": "olderThan", "input": text}],
        )
    seconds = sum(int(n) * _UNITS[unit] for n, unit in _PART.findall(value))
    if seconds > _MAX_SECONDS:
        raise ValidationFailed(
            f"--older-than {text!r} is more than 100 years",
            details=[{"field": "olderThan", "input": text}],
        )
    return seconds


def check_batch_size(batch_size: int) -> int:
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise ValidationFailed(
            f"--batch-size must be between 1 and {MAX_BATCH_SIZE}, not {batch_size}",
            details=[{"field": "batchSize", "input": batch_size}],
        )
    return batch_size


def collect(
    backend: Backend,
    *,
    older_than: str,
    home: Path,
    dry_run: bool,
    cutoff: datetime | None = None,
    batch_size: int = BATCH_SIZE,
    dead_after_seconds: float = 10.0,
    on_batch: Callable[[GcReport], None] | None = None,
) -> GcReport:
    """Remove (or with `dry_run` only count) every finished run last updated more than
    `older_than` ago (or before `cutoff`, when given: the cutoff of an earlier dry run),
    `batch_size` runs per transaction.

    Each batch locks its runs (skipping any another transaction holds), counts and deletes
    their rows, has DBOS delete their workflows, and commits; only then are their folders
    removed, with no transaction open. DBOS's delete runs while the batch still holds the runs'
    locks, so no retry can start between the two; it commits first, so if the batch's own commit
    fails after it, the runs' rows are still there and the next gc removes them."""
    seconds = parse_duration(older_than)
    check_batch_size(batch_size)
    if cutoff is None:
        with backend.read() as cur:
            row = cur.execute(q("gc_cutoff"), {"seconds": seconds}).fetchone()
        assert row is not None
        cutoff = row["cutoff"]
    report = GcReport(
        runs=0,
        dry_run=dry_run,
        older_than=older_than,
        cutoff=cutoff,
        by_status=dict.fromkeys(FINISHED, 0),
        rows=dict.fromkeys(TABLES, 0),
        workspaces=0,
        logs=0,
        unremoved=[],
    )
    for status in FINISHED:
        after = _FIRST
        while True:
            params = {
                "status": status,
                "cutoff": report.cutoff,
                "after_at": after[0],
                "after_id": after[1],
                "dead_after_seconds": dead_after_seconds,
                "limit": batch_size,
            }
            with backend.transaction() as (_, cur):
                locked = cur.execute(q("gc_lock_finished_runs"), params).fetchall()
                if not locked:
                    break
                after = (locked[-1]["updated_at"], locked[-1]["id"])
                # The lock re-read each row: keep only those still finished (a run retried
                # since the statement's snapshot would be queued now, and is not taken).
                ids = [r["id"] for r in locked if r["status"] == status]
                if ids:
                    _remove_rows(backend, cur, ids, report, dry_run=dry_run)
            # Committed (or, for a dry run, locks released): the folders go now.
            _remove_folders(home, ids, report, dry_run=dry_run)
            report.runs += len(ids)
            report.by_status[status] += len(ids)
            if on_batch is not None:
                on_batch(report)
    return report


def _remove_rows(
    backend: Backend, cur: Cursor, ids: list[str], report: GcReport, *, dry_run: bool
) -> None:
    family = [r["id"] for r in cur.execute(q("gc_workflow_family"), {"ids": ids}).fetchall()]
    params: dict[str, Any] = {"ids": ids, "family": family}
    counts = cur.execute(q("gc_row_counts"), params).fetchone()
    assert counts is not None
    for table in TABLES:
        report.rows[table] += int(counts[table])
    if dry_run:
        return
    cur.execute(q("gc_delete_app_rows"), params)
    # DBOS's own deletion of its records (status, inputs, outputs, step outputs, and through
    # their foreign keys messages, events and streams). It commits on its own connection.
    backend.client.delete_workflows(family)


def _plain_name(run_id: str) -> bool:
    """A run id that names one folder (ours always do): never a path that leads elsewhere."""
    return run_id not in ("", ".", "..") and "/" not in run_id and "\x00" not in run_id


def _remove_folders(home: Path, ids: list[str], report: GcReport, *, dry_run: bool) -> None:
    roots = (("workspaces", home / "workspaces"), ("logs", run_logs_dir(home)))
    for run_id in filter(_plain_name, ids):
        for kind, root in roots:
            path = root / run_id
            if not (path.exists() or path.is_symlink()):
                continue
            if not dry_run:
                try:
                    _remove_tree(path)
                except OSError:
                    report.unremoved.append(str(path))
                    continue
            setattr(report, kind, getattr(report, kind) + 1)


def _remove_tree(path: Path) -> None:
    """Remove a run's folder even where its command left folders without write permission. A
    symlink is removed, never followed."""
    if path.is_symlink() or not path.is_dir():
        path.unlink()
        return
    try:
        shutil.rmtree(path)
    except PermissionError:
        os.chmod(path, 0o700)
        for folder, subfolders, _ in os.walk(path):
            for name in subfolders:
                sub = os.path.join(folder, name)
                if not os.path.islink(sub):
                    os.chmod(sub, 0o700)
        shutil.rmtree(path)
