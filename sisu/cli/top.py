"""`sisu top`: the live dashboard (rich); the numbers come from `sisu.service.top`."""

from __future__ import annotations

import math
import sys
import time
from typing import TYPE_CHECKING

import typer

from sisu.cli import _output

if TYPE_CHECKING:
    from collections.abc import Callable

    from rich.console import RenderableType

    from sisu.contracts.top import TopFrame

SPARK = "▁▂▃▄▅▆▇█"


def top(
    once: bool = typer.Option(False, "--once", help="Print one frame and exit."),
    json: bool = _output.json_option(
        "Print one frame's numbers as JSON (the TopFrame model) and exit."
    ),
    interval: float = typer.Option(
        1.0, "--interval", min=0.1, help="Seconds between two frames of the live dashboard."
    ),
    exact: bool = typer.Option(
        False,
        "--exact",
        help="Count every finished run exactly, however long the history (one pass over "
        "app.runs); by default they are estimated from statistics beyond ~100k.",
    ),
) -> None:
    """A live dashboard of the whole system, redrawn every --interval seconds until Ctrl-C.

    Runs by status, queue depth by lane, runs finished in the last 1/5/15 minutes (with a
    sparkline per minute), step latency p50/p95, workers, the inbox and the last failures.
    When stdout is not a terminal it prints one frame and exits, as with --once."""
    from sisu.cli._backend import backend
    from sisu.cli._settings import settings
    from sisu.service import top as service

    _output.use_json(json)
    dead_after = settings().worker_dead_after_seconds
    if json or once or not sys.stdout.isatty():
        with backend() as b:
            frame = service.frame(b, dead_after_seconds=dead_after, exact=exact)
        if json:
            _output.data(frame.to_json())
        else:
            _output.out_console().print(render(frame))
        if not (json or once):
            _output.info("stdout is not a terminal: one frame printed (as with --once)")
        return
    try:
        with backend() as b:
            _live(lambda: service.frame(b, dead_after_seconds=dead_after, exact=exact), interval)
    except KeyboardInterrupt:
        # Ctrl-C is how a dashboard is left: not an error.
        return


def _live(read: Callable[[], TopFrame], interval: float) -> None:
    """Redraw a frame every `interval` seconds, in place, until interrupted."""
    from rich.live import Live

    from sisu.errors import DatabaseUnavailable

    last: TopFrame | None = None
    with Live(console=_output.out_console(), auto_refresh=False) as live:
        while True:
            started = time.monotonic()
            try:
                last = read()
                view = render(last, interval=interval)
            except DatabaseUnavailable as exc:
                # Keep drawing: the next frame reconnects (the database may be restarting).
                view = _unavailable(last, exc.message, interval)
            live.update(view, refresh=True)
            time.sleep(max(0.0, interval - (time.monotonic() - started)))


# -- formatting ------------------------------------------------------------------------------


def age(seconds: float | None) -> str:
    """4s, 2m10s, 3h05m, 2d04h."""
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def sparkline(values: list[int]) -> str:
    """One block per value, scaled to the largest; an empty minute is the lowest block."""
    high = max(values, default=0)
    if high == 0:
        return SPARK[0] * len(values)
    return "".join(
        SPARK[0] if v == 0 else SPARK[max(1, math.ceil(v / high * (len(SPARK) - 1)))]
        for v in values
    )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} ms" if value >= 10 else f"{value:.1f} ms"


def _unavailable(last: TopFrame | None, message: str, interval: float) -> RenderableType:
    from rich.console import Group
    from rich.text import Text

    problem = Text(f"database unavailable: {message} (retrying every {interval:g}s)", "bold red")
    if last is None:
        return problem
    return Group(problem, Text("last frame read:", "dim"), render(last, interval=interval))


def render(  # noqa: C901 — one panel per branch; split when it grows
    frame: TopFrame, *, interval: float | None = None
) -> RenderableType:
    """The dashboard of one frame."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    from sisu.cli._render import status_text

    when = frame.at.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    refresh = f"every {interval:g}s, Ctrl-C quits" if interval is not None else "one frame"
    header = Text.from_markup(f"[bold]sisu top[/]  {when} (database clock)  [dim]{refresh}[/]")

    runs = frame.runs
    estimated = runs.finished_counts == "estimated"
    counts = Table(box=None, show_header=True, pad_edge=False, title_justify="left")
    cells = []
    for status, n in runs.by_status.items():
        counts.add_column(status_text(status), justify="right")
        approx = estimated and status not in ("queued", "running", "waiting_input")
        cells.append(f"~{n:,}" if approx else f"{n:,}")
    counts.add_column("total", justify="right")
    cells.append(f"~{runs.total:,}" if estimated else f"{runs.total:,}")
    counts.add_row(*cells)
    runs_note = (
        "~ estimated from the statistics of app.runs"
        + (
            f" (analyzed {age((frame.at - runs.statistics_at).total_seconds())} ago)"
            if runs.statistics_at
            else ""
        )
        + "; sisu top --exact counts them"
        if estimated
        else "counted exactly"
    )

    tp = frame.throughput
    windows = "   ".join(
        f"{w.minutes}m [bold]{w.finished:,}[/] ({w.per_second:.2f}/s, {w.succeeded:,} ok)"
        for w in tp.windows
    )
    throughput = Text.from_markup(
        f"finished  {windows}   last {len(tp.per_minute)} min "
        f"[cyan]{sparkline(tp.per_minute)}[/] (per minute, newest right)"
    )

    lat = frame.step_latency
    latency = Table(box=None, pad_edge=False)
    for col in ("step", "attempts", "p50", "p95"):
        latency.add_column(col, justify="left" if col == "step" else "right")
    for row in [*lat.by_step, lat.all]:
        latency.add_row(
            row.step_id or "[bold]all[/]", f"{row.attempts:,}", _ms(row.p50_ms), _ms(row.p95_ms)
        )

    lanes = Table(box=None, pad_edge=False)
    for col in ("lane", "queued", "in flight", "oldest queued"):
        lanes.add_column(col, justify="left" if col == "lane" else "right")
    for lane in frame.lanes:
        lanes.add_row(
            lane.lane or "-",
            f"{lane.queued:,}",
            f"{lane.in_flight:,}",
            age(lane.oldest_queued_age_seconds),
        )

    workers = Table(box=None, pad_edge=False)
    for col in ("worker", "host", "pid", "version", "state", "heartbeat", "in flight"):
        workers.add_column(col, justify="right" if col in ("pid", "in flight") else "left")
    for w in frame.workers:
        workers.add_row(
            w.executor_id,
            w.host,
            str(w.pid),
            w.app_version,
            "[green]alive[/]" if w.alive else "[red]dead[/]",
            f"{age(w.heartbeat_age_seconds)} ago",
            f"{w.in_flight:,}",
        )

    failures = Table(box=None, pad_edge=False)
    for col in ("run", "status", "code", "step", "when"):
        failures.add_column(col)
    for f in frame.failures:
        when = f"{age(f.age_seconds)} ago"
        failures.add_row(f.run_id, status_text(f.status), f.code or "-", f.step or "-", when)

    inbox = frame.inbox
    inbox_line = (
        f"[bold]{inbox.count:,}[/] waiting for a human, the oldest for "
        f"{age(inbox.oldest_age_seconds)}  (sisu run inbox)"
        if inbox.count
        else "nobody is waited for"
    )

    def section(title: str) -> Text:
        return Text.from_markup(f"\n[bold underline]{title}[/]")

    return Group(
        header,
        section("Runs by status"),
        counts,
        Text(runs_note, "dim"),
        section("Throughput"),
        throughput,
        section(
            f"Step latency (attempts finished in the last {lat.window_minutes} min, "
            f"{lat.runs:,} runs)"
        ),
        latency if lat.all.attempts else Text("no step finished in the window", "dim"),
        section("Queues by lane"),
        lanes if frame.lanes else Text("queues are empty", "dim"),
        section("Workers"),
        workers if frame.workers else Text("no worker is running", "dim"),
        section("Inbox"),
        Text.from_markup(inbox_line),
        section("Last failures"),
        failures if frame.failures else Text("none", "dim"),
    )
