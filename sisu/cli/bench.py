"""`sisu bench`: measure throughput and latency against raw DBOS."""

from __future__ import annotations

import typer

from sisu.cli import _output


def bench(
    intents: int = typer.Option(300, "--intents", min=1, help="Intents to run."),
    workers: int = typer.Option(2, "--workers", min=1, help="Worker processes."),
    concurrency: int = typer.Option(
        None, "--concurrency", min=1, help="Per-worker concurrency (default: unlimited)."
    ),
    json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Benchmark sisu end to end against a raw-DBOS baseline.

    Runs on a scratch database of the configured server (embedded, or SISU_DATABASE_URL),
    dropped afterwards. Figures come from dbos.workflow_status timestamps."""
    from sisu.cli._settings import settings
    from sisu.db.url import resolve
    from sisu.drills import bench as drill

    _output.use_json(json)
    s = settings()
    server = resolve(s, start=True)
    assert server is not None
    if _output.interactive():
        from rich.progress import Progress, TaskID

        with Progress(console=_output.err_console(), transient=True) as bar:
            tasks: dict[str, TaskID] = {}

            def progress(phase: str, done: int, total: int) -> None:
                if phase not in tasks:
                    tasks[phase] = bar.add_task(phase, total=total)
                bar.update(tasks[phase], completed=done)

            result = drill.run(
                server, s, count=intents, workers=workers, concurrency=concurrency,
                progress=progress,
            )  # fmt: skip
    else:
        result = drill.run(server, s, count=intents, workers=workers, concurrency=concurrency)
    if json:
        _output.emit(result)
        return
    out = _output.data
    out(f"intents          {result.intents} on {result.workers} worker(s), {result.seconds}s")
    out(f"sisu             {result.intents_per_sec} intents/s")
    out(f"raw DBOS         {result.baseline_per_sec} workflows/s (four no-op steps)")
    out(f"ratio            {result.ratio}")
    out(
        f"enqueue->start   p50 {result.enqueue_to_start_ms.p50} ms, "
        f"p99 {result.enqueue_to_start_ms.p99} ms"
    )
    out(f"start->finish    p50 {result.run_ms.p50} ms, p99 {result.run_ms.p99} ms")
