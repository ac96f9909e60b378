"""`sisu bench --history N`: progress and the read table (the drill is sisu.drills.history)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sisu.cli import _output

if TYPE_CHECKING:
    from sisu.config import Settings
    from sisu.contracts.ops import HistoryResult


def run(server: str, settings: Settings, count: int, json: bool) -> None:
    from sisu.drills import history

    with _output.phase_bars() as progress:
        result = history.run(server, settings, count=count, progress=progress)
    if json:
        _output.emit(result)
    else:
        _human(result)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _human(result: HistoryResult) -> None:
    out = _output.data
    statuses = ", ".join(f"{n} {s}" for s, n in result.statuses.items())
    out(f"history    {result.history} runs ({statuses})")
    out(f"built in   {result.build_seconds}s, {result.database_bytes / 2**30:.2f} GiB")
    out(f"{'read':<20} {'p50 ms':>9} {'p95 ms':>9} {'HTTP p50':>9} {'HTTP p95':>9}")
    for name, t in result.reads.items():
        out(
            f"{name:<20} {_ms(t.p50_ms):>9} {_ms(t.p95_ms):>9} "
            f"{_ms(t.http_p50_ms):>9} {_ms(t.http_p95_ms):>9}"
        )
    out("(HTTP '-': the api-shim has no route for that read)")
