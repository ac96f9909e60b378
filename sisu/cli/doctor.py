"""`sisu doctor`: triage, automated."""

from __future__ import annotations

import typer

from sisu.cli import _output


def doctor(
    api: str = typer.Option(
        None, "--api", help="Also check an api-shim, e.g. http://127.0.0.1:3001."
    ),
    run_id: str = typer.Option(
        None, "--run", help="Explain one run's state (e.g. why an event got 409)."
    ),
    json: bool = _output.json_option("Print the findings as JSON."),
) -> None:
    """Triage: find what is wrong and name the fix.

    Checks the database, live workers and their app versions, stranded runs, the api-shim,
    stale processes on the configured ports and the code policy. Each finding says the
    symptom, the check and the fix. Exit 1 when anything needs fixing."""
    from sisu.audit import doctor as doc
    from sisu.cli._settings import settings
    from sisu.db.url import resolve
    from sisu.errors import SisuError

    _output.use_json(json)
    s = settings()
    try:
        url = resolve(s, start=False)
    except SisuError:
        url = None
    report = doc.diagnose(s, url, api=api, run_id=run_id)
    if json:
        _output.emit(report)
    else:
        console = _output.out_console()
        for f in report.findings:
            mark = "[green]ok  [/]" if f.ok else "[red]FIX [/]"
            console.print(f"{mark} [bold]{f.name}[/]: {f.symptom}")
            console.print(f"       [dim]check:[/] {f.check}")
            if f.fix:
                console.print(f"       [dim]fix:[/]   {f.fix}")
    if not report.ok:
        raise typer.Exit(1)
