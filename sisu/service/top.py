"""The numbers of `sisu top`: one frame, read in one snapshot with queries whose cost follows
what is in flight or recent, not the length of the history."""

from __future__ import annotations

from typing import Any

from sisu.contracts.runs import RUN_STATUSES, STEP_IDS, TERMINAL_STATUSES
from sisu.contracts.top import (
    TopFailure,
    TopFrame,
    TopInbox,
    TopLane,
    TopLatency,
    TopRuns,
    TopStepLatency,
    TopThroughput,
    TopWindow,
    TopWorker,
)
from sisu.db.queries import q
from sisu.service import queues
from sisu.service.backend import Backend, Cursor

IN_FLIGHT_STATUSES = ("queued", "running", "waiting_input")
FINISHED_STATUSES = tuple(s for s in RUN_STATUSES if s in TERMINAL_STATUSES)
# Finished runs are counted exactly up to about this many (an exact count reads every one of
# them, ~10 ms per 100k here); beyond, they are estimated from the planner's statistics.
EXACT_LIMIT = 100_000
WINDOWS = (1, 5, 15)
SPARK_MINUTES = 15
LATENCY_MINUTES = 15
LATENCY_RUNS = 500
FAILURES = 10
WORKERS = 20


def frame(
    backend: Backend,
    *,
    dead_after_seconds: float,
    exact: bool = False,
    exact_limit: int = EXACT_LIMIT,
) -> TopFrame:
    """One frame. `exact` counts every finished run whatever the history's length (one pass over
    app.runs); otherwise they are counted exactly only while about `exact_limit` or fewer."""
    with backend.read() as cur:
        cur.execute(q("top_snapshot"))
        at = cur.execute(q("top_clock")).fetchone()
        assert at is not None
        return TopFrame(
            at=at["at"],
            runs=_runs(cur, exact=exact, exact_limit=exact_limit),
            lanes=_lanes(cur),
            throughput=_throughput(cur),
            step_latency=_step_latency(cur),
            inbox=_inbox(cur),
            workers=_workers(cur, dead_after_seconds),
            failures=_failures(cur),
        )


def _estimates(cur: Cursor) -> tuple[dict[str, float], Any] | None:
    """Each finished status's estimated rows now, and when the statistics were gathered; None
    when app.runs has no statistics yet (never analyzed)."""
    row = cur.execute(q("top_status_statistics")).fetchone()
    if row is None or row["reltuples"] < 0 or row["statuses"] is None:
        return None
    rows = float(row["reltuples"])
    if row["relpages"] > 0:
        # As the planner does: the density at the last ANALYZE times the pages there are now.
        rows = rows / row["relpages"] * row["pages_now"]
    shares = dict(zip(row["statuses"], row["shares"], strict=True))
    # A status too rare to be among the sampled values shares what is left over.
    unlisted = [s for s in RUN_STATUSES if s not in shares]
    rest = max(0.0, 1.0 - sum(shares.values()))
    for status in unlisted:
        shares[status] = rest / len(unlisted)
    return {s: rows * shares[s] for s in FINISHED_STATUSES}, row["analyzed_at"]


def _runs(cur: Cursor, *, exact: bool, exact_limit: int) -> TopRuns:
    estimates = None if exact else _estimates(cur)
    if estimates is None or sum(estimates[0].values()) <= exact_limit:
        counted = cur.execute(q("top_status_counts")).fetchall()
        by_status = dict.fromkeys(RUN_STATUSES, 0) | {r["status"]: int(r["n"]) for r in counted}
        mode, analyzed_at = "exact", None
    else:
        in_flight = cur.execute(q("top_in_flight_counts")).fetchall()
        finished, analyzed_at = estimates
        by_status = (
            dict.fromkeys(RUN_STATUSES, 0)
            | {s: round(n) for s, n in finished.items()}
            | {r["status"]: int(r["n"]) for r in in_flight}
        )
        mode = "estimated"
    return TopRuns(
        by_status=by_status,
        total=sum(by_status.values()),
        in_flight=sum(by_status[s] for s in IN_FLIGHT_STATUSES),
        finished_counts=mode,
        statistics_at=analyzed_at,
    )


def _lanes(cur: Cursor) -> list[TopLane]:
    lanes: dict[str | None, dict[str, Any]] = {}
    for r in queues.depth_rows(cur):
        lane = lanes.setdefault(r["lane"], {"queued": 0, "in_flight": 0, "oldest": None})
        if r["status"] == "ENQUEUED":
            lane["queued"] += r["count"]
            age = r["oldestAgeSeconds"]
            lane["oldest"] = age if lane["oldest"] is None else max(lane["oldest"], age)
        else:
            lane["in_flight"] += r["count"]
    return [
        TopLane(
            lane=name,
            queued=v["queued"],
            in_flight=v["in_flight"],
            oldest_queued_age_seconds=v["oldest"],
        )
        for name, v in sorted(lanes.items(), key=lambda kv: (kv[0] is None, kv[0] or ""))
    ]


def _throughput(cur: Cursor) -> TopThroughput:
    rows = cur.execute(q("top_throughput"), {"minutes": max(*WINDOWS, SPARK_MINUTES)}).fetchall()
    finished = {r["minutes_ago"]: r["finished"] for r in rows}
    succeeded = {r["minutes_ago"]: r["succeeded"] for r in rows}
    windows = []
    for minutes in WINDOWS:
        n = sum(v for k, v in finished.items() if k < minutes)
        windows.append(
            TopWindow(
                minutes=minutes,
                finished=n,
                succeeded=sum(v for k, v in succeeded.items() if k < minutes),
                per_second=round(n / (minutes * 60), 3),
            )
        )
    per_minute = [finished.get(k, 0) for k in reversed(range(SPARK_MINUTES))]
    return TopThroughput(windows=windows, per_minute=per_minute)


def _latency(row: dict[str, Any] | None, step_id: str | None) -> TopLatency:
    if row is None or not row["attempts"]:
        # ROLLUP's grand total comes even over no attempt at all: a count of 0, no percentiles.
        return TopLatency(step_id=step_id, attempts=0, p50_ms=None, p95_ms=None)
    return TopLatency(
        step_id=step_id,
        attempts=row["attempts"],
        p50_ms=round(row["p50_ms"], 1),
        p95_ms=round(row["p95_ms"], 1),
    )


def _step_latency(cur: Cursor) -> TopStepLatency:
    rows = cur.execute(
        q("top_step_latency"), {"minutes": LATENCY_MINUTES, "runs": LATENCY_RUNS}
    ).fetchall()
    by_step = {r["step_id"]: r for r in rows if r["step_id"] is not None}
    overall = next((r for r in rows if r["step_id"] is None), None)
    # Sisu's four steps in their order, then any other step id (none today) by name.
    order = [*STEP_IDS, *sorted(set(by_step) - set(STEP_IDS))]
    return TopStepLatency(
        window_minutes=LATENCY_MINUTES,
        sample_limit=LATENCY_RUNS,
        runs=overall["runs"] if overall else 0,
        all=_latency(overall, None),
        by_step=[_latency(by_step[s], s) for s in order if s in by_step],
    )


def _inbox(cur: Cursor) -> TopInbox:
    row = cur.execute(q("top_inbox")).fetchone()
    assert row is not None
    age = row["oldest_age_seconds"]
    return TopInbox(count=row["n"], oldest_age_seconds=None if age is None else round(age, 1))


def _workers(cur: Cursor, dead_after_seconds: float) -> list[TopWorker]:
    rows = cur.execute(
        q("top_workers"), {"dead_after_seconds": dead_after_seconds, "limit": WORKERS}
    ).fetchall()
    return [
        TopWorker(
            executor_id=r["executor_id"],
            host=r["host"],
            pid=r["pid"],
            app_version=r["app_version"],
            alive=r["alive"],
            heartbeat_age_seconds=round(r["heartbeat_age_seconds"], 1),
            in_flight=r["in_flight"],
        )
        for r in rows
    ]


def _failures(cur: Cursor) -> list[TopFailure]:
    rows = cur.execute(q("top_failures"), {"limit": FAILURES}).fetchall()
    return [
        TopFailure(
            run_id=r["id"],
            status=r["status"],
            code=r["code"],
            step=r["step"],
            message=r["message"],
            updated_at=r["updated_at"],
            age_seconds=round(r["age_seconds"], 1),
        )
        for r in rows
    ]
