"""`sisu bench`: measure throughput and latency against raw DBOS."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import typer

from sisu.cli import _output

if TYPE_CHECKING:
    from sisu.contracts.ops import BenchResult, LatencyMs


def bench(
    intents: int = typer.Option(300, "--intents", min=1, help="Intents to run."),
    workers: int = typer.Option(2, "--workers", min=1, help="Worker processes."),
    concurrency: int = typer.Option(
        None, "--concurrency", min=1, help="Per-worker concurrency (default: unlimited)."
    ),
    json: bool = _output.json_option("Print the result as JSON."),
    history: int = typer.Option(
        None,
        "--history",
        min=100,
        help="Instead: build N runs of history (copies of real runs of every status) and time "
        "each read command on it, in process and over HTTP.",
    ),
) -> None:
    """Benchmark sisu end to end against two DBOS baselines.

    Starts WORKERS worker processes on a scratch database of the configured server (embedded,
    or SISU_DATABASE_URL), dropped afterwards. Throughput: INTENTS intents submitted at once
    through the service layer, then as many runs of the equal-work baseline (the same durable
    work written by hand on DBOS: txRatio), then of raw DBOS (four no-op steps: ratio), with
    the CPU per run of the workers and of PostgreSQL (when it runs on this machine). Latency:
    up to 100 runs of sisu and raw DBOS at half the measured throughput (below saturation; a
    burst's latencies, mostly queueing, are reported apart). Figures come from
    dbos.workflow_status timestamps and /proc. Exit 1 if any run did not succeed (the figures
    are then not valid)."""
    from sisu.cli._settings import settings
    from sisu.db.url import resolve
    from sisu.drills import bench as drill

    _output.use_json(json)
    s = settings()
    server = resolve(s, start=True)
    assert server is not None
    if history is not None:
        from sisu.cli import _history

        _history.run(server, s, history, json)
        return
    with _output.phase_bars() as progress:
        result = drill.run(
            server, s, count=intents, workers=workers, concurrency=concurrency, progress=progress
        )
    failed = result.failed_runs + result.baseline_failed_runs + result.tx_baseline_failed_runs
    if json:
        _output.emit(result)
    else:
        _human(result)
    if failed:
        _output.err_console().print(
            f"[red]{result.failed_runs} sisu run(s), {result.tx_baseline_failed_runs} "
            f"equal-work and {result.baseline_failed_runs} raw-DBOS baseline run(s) did not "
            "succeed: these figures are not valid (worker logs: "
            f"{s.logs_dir / 'bench'})[/red]"
        )
        raise typer.Exit(1)


def _human(result: BenchResult) -> None:
    out = _output.data
    out(f"intents          {result.intents} on {result.workers} worker(s), {result.seconds}s")
    out(f"sisu             {result.intents_per_sec} intents/s")
    out(f"raw DBOS         {result.baseline_per_sec} workflows/s (four no-op steps)")
    out(f"ratio            {result.ratio}")
    out(
        f"equal work       {result.tx_baseline_per_sec} workflows/s (the same durable work by hand)"
    )
    out(f"equal-work ratio {result.tx_ratio}")
    cpu = result.cpu_ms_per_run
    out("cpu ms per run   workers + postgres:")
    for label, c in (
        ("  sisu", cpu.sisu),
        ("  equal work", cpu.tx_baseline),
        ("  raw DBOS", cpu.baseline),
    ):
        out(f"{label:<16} {c.workers} + {c.postgres if c.postgres is not None else '?'}")
    if cpu.postgres_note:
        out(f"  ({cpu.postgres_note})")
    out(f"latency          at {result.paced_per_sec} runs/s ({result.paced_runs} runs):")
    _latency(out, "  sisu", result.enqueue_to_start_ms, result.run_ms)
    _latency(out, "  raw DBOS", result.baseline_enqueue_to_start_ms, result.baseline_run_ms)
    out(f"burst latency    all {result.intents} at once (mostly queueing):")
    b = result.burst
    _latency(out, "  sisu", b.enqueue_to_start_ms, b.run_ms)
    _latency(out, "  raw DBOS", b.baseline_enqueue_to_start_ms, b.baseline_run_ms)


def _latency(out: Callable[[str], None], label: str, e2s: LatencyMs, run: LatencyMs) -> None:
    out(
        f"{label:<16} enqueue->start p50 {e2s.p50} / p99 {e2s.p99} ms, "
        f"start->finish p50 {run.p50} / p99 {run.p99} ms"
    )
