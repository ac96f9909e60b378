"""`sisu chaos`: kill real processes at chosen moments, then audit."""

from __future__ import annotations

import typer

from sisu.cli import _output


def chaos(
    iterations: int = typer.Option(5, "--iterations", min=1, help="How many faults to inject."),
    runs: int = typer.Option(4, "--runs", min=1, help="Intents in flight at a time."),
    kill_point: str = typer.Option(
        "random",
        "--kill-point",
        help="execute (inside ExecuteST, before delivery), after-effect (after a delivery to "
        "the outside system, before the step's checkpoint) or random (a seeded mix).",
    ),
    fault: str = typer.Option(
        "worker-kill",
        "--fault",
        help="worker-kill (SIGKILL the worker), postgres-restart (stop and start the embedded "
        "database), postgres-kill (SIGKILL the embedded database's postmaster, then start it; "
        "the worker keeps running and must resume its runs) or shim-kill (SIGKILL the api-shim "
        "while clients submit).",
    ),
    seed: int = typer.Option(None, "--seed", help="Seed for --kill-point random."),
    json: bool = _output.json_option("Print the result as JSON."),
) -> None:
    """Inject faults into real processes while intents run, drain, and audit.

    Exit 0 only when every run succeeded and no effect was delivered twice."""
    from sisu.cli._settings import database_url, settings
    from sisu.drills import chaos as drill

    _output.use_json(json)
    # Checked before anything connects: bad flags write nothing and start nothing.
    options = drill.ChaosOptions(iterations, runs, kill_point, fault, seed)
    s = settings()
    url = database_url(s)
    with _output.progress("chaos") as progress:
        result = drill.run(url, s, options, progress=progress)
    if json:
        _output.emit(result)
    else:
        verdict = "[green]PASS[/]" if result.ok else "[red]FAIL[/]"
        rec = result.recovery_seconds
        _output.info(
            f"{verdict} {result.kills} fault(s), {result.succeeded}/{result.runs} runs "
            f"succeeded, {result.duplicates} duplicate effect(s), {result.pending_left} pending; "
            f"recovery p50 {rec.p50}s max {rec.max}s"
            + (f" (skipped: {result.skipped})" if result.skipped else "")
        )
    if not result.ok:
        raise typer.Exit(1)
