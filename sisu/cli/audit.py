"""`sisu audit`: the SQL oracles."""

from __future__ import annotations

import typer

from sisu.cli import _output


def audit(
    run_id: str = typer.Option(None, "--run", help="Audit one run only."),
    json: bool = _output.json_option("Print the report as JSON."),
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Also print each check's SQL, ready for psql."
    ),
    orphan_after: float = typer.Option(
        600.0,
        "--orphan-after",
        min=0,
        help="Seconds after which an intent that was never run shows as an orphan (a warning).",
    ),
    stalled_after: float = typer.Option(
        30.0,
        "--stalled-after",
        min=0,
        help="Seconds without progress after which a run that its live worker holds but runs "
        "no thread of counts as stalled (a worker resumes such runs within a few heartbeats).",
    ),
) -> None:
    """Check the database against sisu's laws (SQL oracles).

    No duplicate effects, every succeeded run has the four steps in order, app and DBOS agree
    on status, every compile is recorded, no stranded or stalled runs, no unread human
    answers. Exit 1 when any check fails. Intents never run (orphan_intents) show as a warning
    only."""
    from sisu.audit import oracles
    from sisu.cli._settings import database_url, settings

    _output.use_json(json)
    s = settings()
    report = oracles.run(
        database_url(s),
        run_id=run_id,
        dead_after_seconds=s.worker_dead_after_seconds,
        orphan_after_seconds=orphan_after,
        stalled_after_seconds=stalled_after,
        show_sql=verbose,
    )
    if json:
        _output.emit(report)
    else:
        for c in report.checks:
            if c.ok:
                mark = "[green]ok  [/]"
            else:
                mark = "[yellow]WARN[/]" if c.severity == "warning" else "[red]FAIL[/]"
            _output.out_console().print(f"{mark} {c.name:18} {c.count:5}  {c.description}")
            if not c.ok:
                for row in c.detail[:5]:
                    _output.out_console().print(f"       {row}")
            if verbose and c.sql:
                _output.out_console().print(f"[dim]{c.sql}[/]", markup=True, highlight=False)
    if not report.ok:
        raise typer.Exit(1)
