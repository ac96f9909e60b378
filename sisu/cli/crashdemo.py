"""`sisu crashdemo`: the kill -9 durability proof (Walkthrough A)."""

from __future__ import annotations

import typer

from sisu.cli import _output


def crashdemo(
    sleep: float = typer.Option(
        3.0, "--sleep", min=0.5, help="Seconds of durable sleep between the two marks."
    ),
    json: bool = _output.JSON,
) -> None:
    """Prove kill -9 durability with a real worker.

    Kills the worker with SIGKILL mid-workflow, restarts it, and checks from rows that the
    workflow finished (SUCCESS) with exactly one s1 and one s2 mark. Exit 0 only when every
    oracle holds."""
    from sisu.cli._settings import database_url, settings
    from sisu.drills import crashdemo as drill

    _output.use_json(json)
    s = settings()
    url = database_url(s)
    with _output.progress("crash demo") as progress:
        result = drill.run(
            url,
            app_version=s.app_version,
            sleep_seconds=sleep,
            logs_dir=s.logs_dir,
            progress=progress,
        )
    if json:
        _output.emit(result)
    else:
        verdict = "[green]PASS[/]" if result.ok else "[red]FAIL[/]"
        _output.info(
            f"{verdict} workflow {result.workflow_id}: status {result.status}, marks "
            f"s1={result.marks.s1} s2={result.marks.s2}, killed pid {result.killed_pid} at "
            f"{result.killed_at.isoformat()}, resumed on pid {result.resumed_pid}, "
            f"{result.elapsed_seconds:.1f}s"
        )
    if not result.ok:
        raise typer.Exit(1)
