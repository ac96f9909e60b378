"""`sisu gc`: retention of finished runs."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import typer

from sisu.cli import _output

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from sisu.contracts.ops import GcReport


def gc(  # noqa: C901 — option checks, then one sweep; split when it grows
    older_than: str = typer.Option(
        ...,
        "--older-than",
        help="Remove finished runs last updated longer ago than this: 30d, 12h, 90m, 2w, 0s "
        "(0s: every finished run).",
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Count what would be removed; remove nothing."
    ),
    yes: bool = typer.Option(
        False,
        "--yes",
        "-y",
        help="Do not ask for confirmation (needed when not on a terminal, and with --json).",
    ),
    batch_size: int = typer.Option(
        500, "--batch-size", help="Runs removed per transaction (1-10000)."
    ),
    json: bool = _output.JSON,
) -> None:
    """Remove finished runs (succeeded, failed, canceled) last updated before a cutoff.

    Removes each run's rows in app.* and its DBOS workflow records, then its workspace and its
    command output under SISU_HOME. Never a run that is queued, running, waiting for input or
    waiting for repair (retries_exceeded), nor one another command holds at that moment.
    Asks first on a terminal; elsewhere (cron, CI) it refuses without --yes."""
    from sisu.cli._backend import backend
    from sisu.cli._settings import settings
    from sisu.errors import ConfirmationRequired
    from sisu.service import gc as retention

    _output.use_json(json)
    # Bad input fails before anything is counted, asked or removed.
    retention.parse_duration(older_than)
    retention.check_batch_size(batch_size)
    ask = not dry_run and not yes
    if ask and (json or not (sys.stdin.isatty() and sys.stderr.isatty())):
        raise ConfirmationRequired(
            "`sisu gc` deletes runs for good; pass --yes to confirm "
            "(or --dry-run to see what it would remove)"
        )
    s = settings()

    def sweep(dry: bool, cutoff: datetime | None) -> GcReport:
        def run(on_batch: Callable[[GcReport], None] | None = None) -> GcReport:
            with backend() as b:
                return retention.collect(
                    b,
                    older_than=older_than,
                    home=s.home,
                    dry_run=dry,
                    cutoff=cutoff,
                    batch_size=batch_size,
                    dead_after_seconds=s.worker_dead_after_seconds,
                    on_batch=on_batch,
                )

        if not _output.interactive():
            return run()
        verb = "counting" if dry else "removing"
        with _output.err_console().status(f"{verb} finished runs") as status:
            return run(lambda r: status.update(f"{verb} finished runs: {r.runs} so far"))

    cutoff = None
    if ask:
        preview = sweep(dry=True, cutoff=None)
        _show(preview)
        if preview.runs == 0:
            return
        if not typer.confirm(f"Remove these {preview.runs} run(s) for good?", err=True):
            raise typer.Exit(1)
        # The preview's cutoff, not a later one: a run that finished while the operator read
        # the preview is not removed unseen.
        cutoff = preview.cutoff
    report = sweep(dry=dry_run, cutoff=cutoff)
    if json:
        _output.emit(report)
    else:
        _show(report)
    if report.unremoved:
        _output.info(f"could not remove {len(report.unremoved)} folder(s); remove them by hand:")
        for path in report.unremoved:
            _output.info(f"  {path}")
        raise typer.Exit(1)


def _show(report: GcReport) -> None:
    from rich.table import Table

    verb = "would remove" if report.dry_run else "removed"
    statuses = ", ".join(f"{status} {n}" for status, n in report.by_status.items())
    _output.data(
        f"{verb} {report.runs} finished run(s) last updated before "
        f"{report.cutoff.isoformat()} (older than {report.older_than}): {statuses}"
    )
    if report.runs == 0:
        return
    table = Table(show_edge=False, pad_edge=False)
    table.add_column("what")
    table.add_column(verb, justify="right")
    for name, n in report.rows.items():
        if n:
            table.add_row(name, str(n))
    table.add_row("workspaces", str(report.workspaces))
    table.add_row("logs", str(report.logs))
    _output.out_console().print(table)
