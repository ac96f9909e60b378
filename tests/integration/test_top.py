"""`sisu top`'s numbers (`sisu.service.top.frame`) against rows written straight into `app.*` and
`dbos.*`: each panel counts what its rows say — status counts exact, or estimated from the
planner's statistics and labelled so; the 1/5/15-minute windows and the per-minute sparkline;
step latency percentiles over the right attempts only; workers and their runs in flight; the
inbox; the last failures — and each query's plan (EXPLAIN, never a timing) on a long history
reads only what is in flight or recent, never the whole of app.runs."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from sisu.contracts.runs import RUN_STATUSES
from sisu.contracts.top import TopFrame
from sisu.db.queries import q
from sisu.service import top
from sisu.service.backend import Backend
from tests.support.db import rows, scalar
from tests.support.plans import nodes, plan

DEAD_AFTER = 15.0


def seed(
    url: str,
    status: str,
    *,
    count: int = 1,
    finished_ago_s: float = 3600,
    lane: str = "batch",
    error: dict[str, Any] | None = None,
    steps: Sequence[tuple[str, float, float]] = (),
) -> list[str]:
    """`count` runs in `status`, last updated `finished_ago_s` seconds ago, each with the step
    attempts `steps`: (step id, finished seconds ago, duration ms). Returns the ids."""
    ids = [str(uuid.uuid4()) for _ in range(count)]
    with psycopg.connect(url) as conn:
        for run_id in ids:
            conn.execute("INSERT INTO app.intents (id, goal) VALUES (%s, 'seeded')", (run_id,))
            conn.execute(
                "INSERT INTO app.runs (id, status, error, lane, queue_name, app_version,"
                " created_at, updated_at) VALUES (%s, %s, %s, %s, 'sisu-intents', 'v1',"
                " now() - make_interval(secs => %s + 5), now() - make_interval(secs => %s))",
                (run_id, status, Jsonb(error) if error else None, lane, finished_ago_s,
                 finished_ago_s),
            )  # fmt: skip
            for attempt, (step_id, ago_s, ms) in enumerate(steps, start=1):
                conn.execute(
                    "INSERT INTO app.run_steps (run_id, step_id, attempt, phase, started_at,"
                    " finished_at) VALUES (%s, %s, %s, 'succeeded',"
                    " now() - make_interval(secs => %s) - make_interval(secs => %s / 1000.0),"
                    " now() - make_interval(secs => %s))",
                    (run_id, step_id, attempt, ago_s, ms, ago_s),
                )
    return ids


def frame(url: str, **kwargs: Any) -> TopFrame:
    backend = Backend(url, app_version="v1", pooled=False)
    try:
        return top.frame(backend, dead_after_seconds=DEAD_AFTER, **kwargs)
    finally:
        backend.close()


def exact_counts(url: str) -> dict[str, int]:
    found = rows(url, "SELECT status, count(*)::int AS n FROM app.runs GROUP BY status")
    return dict.fromkeys(RUN_STATUSES, 0) | {r["status"]: r["n"] for r in found}


def analyze(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ANALYZE app.runs")


MIX = {
    "queued": 4,
    "running": 3,
    "waiting_input": 5,
    "succeeded": 120,
    "failed": 30,
    "canceled": 10,
    "retries_exceeded": 20,
}


# -- runs by status --------------------------------------------------------------------------


def test_a_small_history_is_counted_exactly(db_url: str) -> None:
    for status, n in MIX.items():
        seed(db_url, status, count=n)
    runs = frame(db_url).runs
    assert runs.finished_counts == "exact" and runs.statistics_at is None
    assert runs.by_status == exact_counts(db_url) == MIX
    assert list(runs.by_status) == list(RUN_STATUSES)  # every status, zeros too, in order
    assert runs.total == sum(MIX.values())
    assert runs.in_flight == 4 + 3 + 5


def test_an_empty_database_counts_zero_everywhere(db_url: str) -> None:
    got = frame(db_url)
    assert got.runs.by_status == dict.fromkeys(RUN_STATUSES, 0)
    assert got.runs.finished_counts == "exact"
    assert got.throughput.per_minute == [0] * 15
    assert [w.finished for w in got.throughput.windows] == [0, 0, 0]
    assert got.step_latency.all.attempts == 0 and got.step_latency.all.p50_ms is None
    assert got.inbox.count == 0 and got.inbox.oldest_age_seconds is None
    assert got.lanes == [] and got.workers == [] and got.failures == []


def test_beyond_the_limit_finished_runs_are_estimated_and_in_flight_ones_still_exact(
    db_url: str,
) -> None:
    for status, n in MIX.items():
        seed(db_url, status, count=n)
    analyze(db_url)
    # ANALYZE of a table this small reads every row: the estimates are the counts themselves.
    estimated = frame(db_url, exact_limit=0).runs
    assert estimated.finished_counts == "estimated"
    assert estimated.statistics_at is not None
    assert estimated.by_status == MIX

    # Runs that arrive after the statistics: in-flight counts see them at once, the finished
    # estimates only scale with the table's growth in pages (none here), until the next ANALYZE.
    seed(db_url, "queued", count=7)
    seed(db_url, "running", count=2)
    later = frame(db_url, exact_limit=0).runs
    assert later.finished_counts == "estimated"
    assert later.by_status["queued"] == 4 + 7 and later.by_status["running"] == 3 + 2
    assert later.by_status["waiting_input"] == 5
    assert later.in_flight == 4 + 7 + 3 + 2 + 5

    # --exact counts every run whatever the limit.
    exact = frame(db_url, exact_limit=0, exact=True).runs
    assert exact.finished_counts == "exact"
    assert exact.by_status == exact_counts(db_url)


def test_estimates_follow_the_planner_statistics_not_the_rows(db_url: str) -> None:
    """Guards the test above against estimates that are secretly exact counts: rows deleted
    after ANALYZE are still in the estimate of a finished status, and gone from an exact one."""
    ids = seed(db_url, "succeeded", count=50)
    seed(db_url, "failed", count=50)
    analyze(db_url)
    with psycopg.connect(db_url) as conn:
        conn.execute("DELETE FROM app.runs WHERE id = ANY(%s)", (ids[:20],))
    estimated = frame(db_url, exact_limit=0).runs
    assert estimated.finished_counts == "estimated"
    assert estimated.by_status["succeeded"] == 50  # the table has as many pages as before
    assert frame(db_url).runs.by_status["succeeded"] == 30


# -- throughput ------------------------------------------------------------------------------


def test_throughput_windows_and_sparkline_count_runs_by_when_they_finished(db_url: str) -> None:
    # Each group sits in the middle of its minute, far from any window's edge.
    seed(db_url, "succeeded", count=3, finished_ago_s=30)  # minute 0
    seed(db_url, "failed", count=1, finished_ago_s=30)
    seed(db_url, "canceled", count=2, finished_ago_s=210)  # minute 3
    seed(db_url, "retries_exceeded", count=4, finished_ago_s=630)  # minute 10
    seed(db_url, "succeeded", count=5, finished_ago_s=630)
    seed(db_url, "succeeded", count=8, finished_ago_s=1200)  # 20 minutes ago: no window
    seed(db_url, "running", count=6, finished_ago_s=30)  # not finished
    seed(db_url, "waiting_input", count=2, finished_ago_s=30)
    tp = frame(db_url).throughput
    assert [(w.minutes, w.finished, w.succeeded) for w in tp.windows] == [
        (1, 4, 3),
        (5, 6, 3),
        (15, 15, 8),
    ]
    assert [w.per_second for w in tp.windows] == [round(4 / 60, 3), 0.02, round(15 / 900, 3)]
    expected = [0] * 15
    expected[-1], expected[-4], expected[-11] = 4, 2, 9  # oldest minute first
    assert tp.per_minute == expected


# -- step latency ----------------------------------------------------------------------------


def _percentile(values: list[float], p: float) -> float:
    """percentile_cont: linear interpolation between the closest ranks."""
    ordered = sorted(values)
    pos = p * (len(ordered) - 1)
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def test_step_latency_is_over_recent_attempts_of_recently_finished_runs(db_url: str) -> None:
    compile_ms = [100.0, 120.0, 140.0, 400.0]
    execute_ms = [1000.0, 1500.0, 2000.0, 9000.0]
    for c, e in zip(compile_ms, execute_ms, strict=True):
        seed(db_url, "succeeded", finished_ago_s=60,
             steps=[("CompileST", 62, c), ("ExecuteST", 61, e)])  # fmt: skip
    # Left out: a run still running (its attempts too), a run that finished 20 minutes ago,
    # and the attempt of a recent run that finished before the window (a long human wait).
    seed(db_url, "running", finished_ago_s=60, steps=[("CompileST", 61, 99999.0)])
    seed(db_url, "succeeded", finished_ago_s=1200, steps=[("CompileST", 1201, 77777.0)])
    seed(db_url, "failed", finished_ago_s=60,
         steps=[("CompileST", 1300, 55555.0), ("ExecuteST", 61, 3000.0)])  # fmt: skip
    execute_ms.append(3000.0)

    lat = frame(db_url).step_latency
    assert lat.runs == 5
    by_step = {s.step_id: s for s in lat.by_step}
    assert list(by_step) == ["CompileST", "ExecuteST"]  # sisu's step order
    for step_id, values in (("CompileST", compile_ms), ("ExecuteST", execute_ms)):
        got = by_step[step_id]
        assert got.attempts == len(values), step_id
        assert got.p50_ms == pytest.approx(_percentile(values, 0.5), abs=0.2), step_id
        assert got.p95_ms == pytest.approx(_percentile(values, 0.95), abs=0.2), step_id
    everything = compile_ms + execute_ms
    assert lat.all.attempts == len(everything)
    assert lat.all.p50_ms == pytest.approx(_percentile(everything, 0.5), abs=0.2)
    assert lat.all.p95_ms == pytest.approx(_percentile(everything, 0.95), abs=0.2)


def test_step_latency_samples_only_the_runs_that_finished_last(db_url: str) -> None:
    newest = [seed(db_url, "succeeded", finished_ago_s=10 + i, steps=[("CompileST", 12 + i, 5.0)])
              for i in range(3)]  # fmt: skip
    seed(db_url, "failed", finished_ago_s=100, steps=[("CompileST", 101, 900.0)])
    seed(db_url, "succeeded", finished_ago_s=200, steps=[("CompileST", 201, 900.0)])
    with psycopg.connect(db_url) as conn:
        found = conn.execute(q("top_step_latency"), {"minutes": 15, "runs": 3}).fetchall()
    overall = next(r for r in found if r[0] is None)
    assert len(newest) == 3
    assert overall[1:4] == (3, 3, 5.0)  # attempts, runs, p50: only the three newest runs


# -- inbox, failures, workers, lanes ---------------------------------------------------------


def test_inbox_counts_the_waiting_runs_and_the_oldest_wait(db_url: str) -> None:
    seed(db_url, "waiting_input", count=3, finished_ago_s=90)
    seed(db_url, "waiting_input", count=1, finished_ago_s=7200)
    seed(db_url, "running", count=2, finished_ago_s=99999)
    inbox = frame(db_url).inbox
    assert inbox.count == 4
    assert inbox.oldest_age_seconds is not None and 7200 <= inbox.oldest_age_seconds < 7260


def test_last_failures_are_the_newest_failed_and_out_of_attempts_runs(db_url: str) -> None:
    timeout = {
        "code": "net_timeout",
        "message": "the outside system timed out",
        "step": "ExecuteST",
    }
    expired = {"code": "input_timeout", "message": "nobody answered", "step": "DecideST"}
    newest_failed = seed(db_url, "failed", finished_ago_s=5, error=expired)
    repair = seed(db_url, "retries_exceeded", count=10, finished_ago_s=50, error=timeout)
    seed(db_url, "failed", count=3, finished_ago_s=500, error=expired)  # older than the 10 shown
    seed(db_url, "canceled", finished_ago_s=1, error={"code": "rejected", "message": "no"})
    failures = frame(db_url).failures
    assert len(failures) == 10
    assert failures[0].run_id == newest_failed[0]
    assert (failures[0].status, failures[0].code, failures[0].step) == (
        "failed", "input_timeout", "DecideST"
    )  # fmt: skip
    assert {f.run_id for f in failures[1:]} <= set(repair)
    assert {(f.status, f.code, f.step) for f in failures[1:]} == {
        ("retries_exceeded", "net_timeout", "ExecuteST")
    }
    assert [f.updated_at for f in failures] == sorted(
        (f.updated_at for f in failures), reverse=True
    )


def test_workers_show_heartbeat_age_state_and_their_pending_runs(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "INSERT INTO app.workers (executor_id, app_version, pid, host, heartbeat_at,"
            " stopped_at) VALUES ('w-live', 'v2', 11, 'h1', now() - interval '2 s', NULL),"
            " ('w-dead', 'v1', 12, 'h2', now() - interval '10 min', NULL),"
            " ('w-stopped', 'v1', 13, 'h3', now() - interval '1 min', now())"
        )
        conn.execute(
            "INSERT INTO dbos.workflow_status (workflow_uuid, status, name, executor_id)"
            " SELECT gen_random_uuid()::text, s, 'RunIntentWF', e FROM (VALUES"
            " ('PENDING', 'w-live'), ('PENDING', 'w-live'), ('SUCCESS', 'w-live'),"
            " ('ERROR', 'w-live'), ('PENDING', 'w-dead'), ('ENQUEUED', NULL)) v (s, e)"
        )
    workers = frame(db_url).workers
    assert [(w.executor_id, w.alive, w.app_version, w.in_flight) for w in workers] == [
        ("w-live", True, "v2", 2),
        ("w-dead", False, "v1", 1),
    ]
    assert 2 <= workers[0].heartbeat_age_seconds < 60
    assert 600 <= workers[1].heartbeat_age_seconds < 660


def test_lanes_sum_the_queue_depth_of_each_lane(db_url: str) -> None:
    interactive = seed(db_url, "queued", count=2, lane="interactive")
    batch_queued = seed(db_url, "queued", count=3)
    batch_running = seed(db_url, "running", count=1)
    waiting = seed(db_url, "waiting_input", count=2)
    with psycopg.connect(db_url) as conn:
        for ids, status in (
            (interactive + batch_queued, "ENQUEUED"),
            (batch_running + waiting, "PENDING"),
        ):
            conn.execute(
                "INSERT INTO dbos.workflow_status (workflow_uuid, status, name, queue_name,"
                " created_at) SELECT id, %s, 'RunIntentWF', 'sisu-intents',"
                " (extract(epoch FROM now() - interval '90 s') * 1000)::bigint"
                " FROM unnest(%s::text[]) id",
                (status, ids),
            )
    lanes = {lane.lane: lane for lane in frame(db_url).lanes}
    assert set(lanes) == {"batch", "interactive"}
    assert (lanes["batch"].queued, lanes["batch"].in_flight) == (3, 3)
    assert (lanes["interactive"].queued, lanes["interactive"].in_flight) == (2, 0)
    age = lanes["interactive"].oldest_queued_age_seconds
    assert age is not None and 90 <= age < 150


# -- plans on a long history -----------------------------------------------------------------

HISTORY = 30_000
RECENT = 300


@pytest.fixture(scope="module")
def history(module_db_url: str) -> Iterator[str]:
    """HISTORY runs over half a year, nearly all finished; RECENT of them finished in the last
    ten minutes with four step attempts each; a few in flight and a few waiting; DBOS's
    workflow rows alike (a handful PENDING on two workers). ANALYZEd and vacuumed."""
    with psycopg.connect(module_db_url) as conn:
        conn.execute(
            """
            CREATE TEMP TABLE g AS
            SELECT i, 'r-' || lpad(i::text, 6, '0') AS id,
                   CASE WHEN i > %(n)s - 40 THEN (ARRAY['queued', 'running', 'waiting_input'])[i %% 3 + 1]
                        WHEN i %% 10 < 8 THEN 'succeeded'
                        WHEN i %% 10 = 8 THEN 'failed'
                        ELSE (ARRAY['canceled', 'retries_exceeded'])[i %% 20 / 10 + 1] END AS status,
                   CASE WHEN i > %(n)s - %(recent)s
                        THEN now() - (%(n)s - i) * interval '2 s'
                        ELSE now() - interval '180 days' + i * interval '8 minutes' END AS at
            FROM generate_series(1, %(n)s) i
            """,  # noqa: E501
            {"n": HISTORY, "recent": RECENT},
        )
        conn.execute("INSERT INTO app.intents (id, goal, created_at) SELECT id, 'g', at FROM g")
        conn.execute(
            """
            INSERT INTO app.runs (id, status, error, queue_name, app_version, created_at,
                                  updated_at)
            SELECT id, status, CASE WHEN status IN ('failed', 'retries_exceeded')
                                    THEN '{"code": "net_timeout"}'::jsonb END,
                   'sisu-intents', 'v1', at - interval '3 s', at
            FROM g
            """
        )
        conn.execute(
            """
            INSERT INTO app.run_steps (run_id, step_id, attempt, phase, started_at, finished_at)
            SELECT id, step, 1, 'succeeded', at - interval '2 s', at - interval '1 s'
            FROM g, unnest(ARRAY['CompileST', 'ApplyPatchST', 'DecideST', 'ExecuteST']) step
            """
        )
        conn.execute(
            """
            INSERT INTO dbos.workflow_status (workflow_uuid, status, name, executor_id,
                                              queue_name, created_at)
            SELECT id, CASE status WHEN 'queued' THEN 'ENQUEUED'
                                   WHEN 'running' THEN 'PENDING'
                                   WHEN 'waiting_input' THEN 'PENDING'
                                   WHEN 'succeeded' THEN 'SUCCESS' ELSE 'ERROR' END,
                   'RunIntentWF', 'w-' || i % 2, 'sisu-intents',
                   (extract(epoch FROM at) * 1000)::bigint
            FROM g
            """
        )
        conn.execute(
            "INSERT INTO app.workers (executor_id, app_version, pid, host)"
            " VALUES ('w-0', 'v1', 1, 'h'), ('w-1', 'v1', 2, 'h')"
        )
    with psycopg.connect(module_db_url, autocommit=True) as conn:
        for table in ("app.intents", "app.runs", "app.run_steps", "dbos.workflow_status"):
            conn.execute(f"VACUUM (ANALYZE) {table}")
    yield module_db_url


PARAMS = {"minutes": 15, "runs": top.LATENCY_RUNS, "limit": 10, "dead_after_seconds": DEAD_AFTER}
# Every query of a frame but the exact count of every run (top_status_counts), which a long
# history only reads with --exact.
BOUNDED = [
    "top_in_flight_counts",
    "top_status_statistics",
    "top_throughput",
    "top_step_latency",
    "top_inbox",
    "top_failures",
    "top_workers",
    "queue_depth",
]
BIG = {"runs", "run_steps", "workflow_status"}


def test_the_seeded_history_is_long(history: str) -> None:
    """Guards the premise of the plan tests: a long history, mostly finished, a little recent."""
    assert scalar(history, "SELECT count(*) FROM app.runs") == HISTORY
    recent = "SELECT count(*) FROM app.runs WHERE updated_at > now() - interval '15 minutes'"
    assert scalar(history, recent) == RECENT


def partial_indexes(url: str) -> set[str]:
    found = rows(url, "SELECT indexname FROM pg_indexes WHERE indexdef LIKE '%% WHERE %%'")
    return {r["indexname"] for r in found}


@pytest.mark.parametrize("query", BOUNDED)
def test_no_frame_query_reads_a_whole_big_table(history: str, query: str) -> None:
    node = plan(history, query, PARAMS)
    partial = partial_indexes(history)
    scans = [n for n in nodes(node) if n.get("Relation Name") in BIG]
    assert scans or query == "top_status_statistics", node
    for n in scans:
        # Each scan is bounded: by a condition on the index (a status, a time, a key), or by a
        # partial index that holds only the rows in flight (runs_active_idx, DBOS's PENDING
        # and in-flight indexes) — never a walk of a whole index with a filter.
        if n["Node Type"] == "Bitmap Heap Scan":
            # The rows of a key the bitmap index scan below found (a run's step attempts).
            assert n.get("Recheck Cond"), (query, n)
            continue
        assert n["Node Type"] in ("Index Scan", "Index Only Scan"), (query, n)
        assert n.get("Index Cond") or n["Index Name"] in partial, (query, n)


def test_a_long_history_is_estimated_and_the_frame_agrees_with_its_rows(history: str) -> None:
    got = frame(history, exact_limit=1000)
    assert got.runs.finished_counts == "estimated"
    counted = exact_counts(history)
    for status in ("queued", "running", "waiting_input"):
        assert got.runs.by_status[status] == counted[status], status
    # A fresh ANALYZE of 30k rows reads them all: the estimates are right to rounding.
    for status in ("succeeded", "failed", "canceled", "retries_exceeded"):
        assert got.runs.by_status[status] == pytest.approx(counted[status], rel=0.01), status
    assert got.throughput.windows[-1].finished == RECENT - 40
    assert got.step_latency.runs == RECENT - 40
    assert got.step_latency.all.attempts == 4 * (RECENT - 40)
