"""The database gauges of the `/metrics` pages (sisu.metrics.DatabaseGauges) on real PostgreSQL:
they say what the rows say, are read at most once per cache period however many scrapes come at
once, and a database that cannot be read leaves a page that still answers, with
`sisu_database_up 0` and no database gauges — also over real HTTP on a worker's admin server.
The runs-in-flight read stays an index scan on a long history (EXPLAIN, never a timing)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

import sisu
from sisu import metrics
from sisu.worker import admin
from tests.support.metrics import parse
from tests.support.plans import nodes, plan
from tests.support.polling import poll
from tests.support.serve import free_port

QUEUE = "sisu-intents"


def add_runs(url: str, status: str, n: int, *, prefix: str = "r") -> list[str]:
    """`n` intents with a run in `status`, written straight into app.*; their ids."""
    ids = [f"{prefix}-{status}-{i}" for i in range(n)]
    with psycopg.connect(url) as conn:
        for rid in ids:
            conn.execute("INSERT INTO app.intents (id, goal) VALUES (%s, 'seeded')", (rid,))
            conn.execute(
                "INSERT INTO app.runs (id, status, queue_name, app_version) "
                "VALUES (%s, %s, %s, 'v1')",
                (rid, status, QUEUE),
            )
    return ids


def page_of(gauges: metrics.DatabaseGauges) -> Any:
    registry = metrics.worker_page(gauges, app_version="v1")
    return parse(metrics.render(registry).decode())


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingRead:
    """The real read, counted."""

    def __init__(self) -> None:
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, url: str, dead_after_seconds: float) -> metrics.Snapshot:
        with self._lock:
            self.calls += 1
        return metrics._read(url, dead_after_seconds)


def test_the_gauges_say_what_the_rows_say(db_url: str) -> None:
    add_runs(db_url, "waiting_input", 2)
    add_runs(db_url, "queued", 3)
    add_runs(db_url, "succeeded", 4)
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "INSERT INTO app.workers (executor_id, app_version, pid, host, heartbeat_at) VALUES "
            "('live-1', 'v1', 1, 'h', now() - interval '3 seconds'), "
            "('dead-1', 'v1', 2, 'h', now() - interval '1 hour')"
        )
        conn.execute(
            "INSERT INTO app.workers (executor_id, app_version, pid, host, stopped_at) "
            "VALUES ('stopped-1', 'v1', 3, 'h', now())"
        )
    page = page_of(metrics.DatabaseGauges(db_url, cache_seconds=0, dead_after_seconds=60))
    assert page.value("sisu_database_up") == 1
    assert page.value("sisu_runs_waiting_input") == 2
    assert page.by_label("sisu_runs_in_flight", "status") == {
        "queued": 3,
        "running": 0,
        "waiting_input": 2,
    }
    ages = page.by_label("sisu_worker_heartbeat_age_seconds", "executor_id")
    assert set(ages) == {"live-1"}  # live workers only
    assert 3 <= ages["live-1"] < 60
    # No workflow is enqueued (the runs were written without one): sisu's queues read 0 in
    # every lane rather than vanish.
    assert page.by_label("sisu_queue_depth", "lane", queue=QUEUE) == {"batch": 0, "interactive": 0}


def test_the_database_is_read_once_per_cache_period(db_url: str) -> None:
    clock = FakeClock()
    read = CountingRead()
    gauges = metrics.DatabaseGauges(db_url, cache_seconds=5, clock=clock, read=read)
    add_runs(db_url, "waiting_input", 1, prefix="a")
    assert page_of(gauges).value("sisu_runs_waiting_input") == 1
    add_runs(db_url, "waiting_input", 1, prefix="b")
    clock.now += 4.9
    assert page_of(gauges).value("sisu_runs_waiting_input") == 1  # the cached value
    assert read.calls == 1
    clock.now += 0.1
    assert page_of(gauges).value("sisu_runs_waiting_input") == 2
    assert read.calls == 2


def test_scrapes_at_once_read_the_database_once(db_url: str) -> None:
    read = CountingRead()
    gauges = metrics.DatabaseGauges(db_url, cache_seconds=60, read=read)
    start = threading.Barrier(8)
    values: list[float] = []

    def scrape() -> None:
        start.wait()
        values.append(page_of(gauges).value("sisu_database_up"))

    threads = [threading.Thread(target=scrape) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert values == [1.0] * 8
    assert read.calls == 1


@pytest.fixture
def nowhere() -> str:
    """A database URL on a port nothing listens on."""
    return f"postgresql://postgres@127.0.0.1:{free_port()}/sisu"


def test_a_database_that_cannot_be_read_leaves_up_0_and_no_gauges(nowhere: str) -> None:
    clock = FakeClock()
    read = CountingRead()
    gauges = metrics.DatabaseGauges(nowhere, cache_seconds=5, clock=clock, read=read)
    page = page_of(gauges)
    assert page.value("sisu_database_up") == 0
    for name in ("sisu_queue_depth", "sisu_runs_in_flight", "sisu_runs_waiting_input"):
        assert page.series(name) == {}, name
    # The worker's own counters are still there.
    assert page.value("sisu_runs_total", status="succeeded") >= 0
    # A failed read is not tried again before the cache expires: a down database is not
    # hammered by scrapes.
    page_of(gauges)
    assert read.calls == 1
    clock.now += 5
    page_of(gauges)
    assert read.calls == 2


@pytest.fixture
def admin_server(nowhere: str) -> Iterator[int]:
    """A worker's admin server whose page reads a database that is down; its port."""
    gauges = metrics.DatabaseGauges(nowhere, cache_seconds=0)
    page = metrics.worker_page(gauges, app_version="v1")
    server = admin.serve("127.0.0.1", 0, lambda: {"ok": True}, lambda: metrics.render(page))
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()


def test_the_admin_port_answers_metrics_while_the_database_is_down(admin_server: int) -> None:
    r = httpx.get(f"http://127.0.0.1:{admin_server}/metrics", timeout=10)
    assert r.status_code == 200
    assert r.headers["content-type"] == metrics.CONTENT_TYPE
    page = parse(r.text)
    assert page.value("sisu_database_up") == 0
    assert page.value("sisu_build_info", version=sisu.__version__, app_version="v1") == 1
    # The health probe is untouched by the route beside it.
    assert httpx.get(f"http://127.0.0.1:{admin_server}/healthz", timeout=10).json() == {"ok": True}


RUNS = 6000
# runs_active_idx holds only the runs in flight (0011); the other two lead with the status.
IN_FLIGHT_INDEXES = {"runs_active_idx", "runs_status_updated_idx", "runs_status_created_id_idx"}


def test_runs_in_flight_is_an_index_scan_on_a_long_history(db_url: str) -> None:
    """Mostly ended runs and a few in flight, ANALYZEd: the read goes by an index to the runs in
    flight, never through the whole table."""
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "INSERT INTO app.intents (id, goal) "
            "SELECT 'h-' || i, 'seeded' FROM generate_series(1, %(n)s) i",
            {"n": RUNS},
        )
        conn.execute(
            "INSERT INTO app.runs (id, status, queue_name, app_version) "
            "SELECT id, CASE WHEN substr(id, 3)::int % 100 = 0 THEN 'waiting_input' "
            "WHEN substr(id, 3)::int % 100 = 1 THEN 'queued' ELSE 'succeeded' END, "
            "'sisu-intents', 'v1' FROM app.intents"
        )
    # A long-lived database is vacuumed; a just-seeded one is not. Either way the runs read are
    # those of an index holding the runs by status (or only those in flight).
    for vacuum in (False, True):
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE app.runs" if vacuum else "ANALYZE app.intents, app.runs")
        root = plan(db_url, "metrics_runs_in_flight", {})
        assert not [n for n in nodes(root) if n["Node Type"] == "Seq Scan"], root
        indexes = {n["Index Name"] for n in nodes(root) if "Index Name" in n}
        assert indexes and indexes <= IN_FLIGHT_INDEXES, root
    gauges = metrics.DatabaseGauges(db_url, cache_seconds=0)
    assert gauges.snapshot().in_flight == {"queued": 60, "running": 0, "waiting_input": 60}


def _sweeps(gauges: metrics.DatabaseGauges) -> dict[str, float]:
    page = parse(metrics.render(metrics.worker_page(gauges, app_version="v1")).decode())
    return page.by_label("sisu_failover_sweeps_total", "outcome")


def test_failover_sweeps_are_counted_ok_and_error(db_url: str, nowhere: str) -> None:
    """A sweep that read the fleet counts `ok`; one whose database is down counts `error` (it
    is tried again on the next tick)."""
    from sisu.worker.failover import Failover

    gauges = metrics.DatabaseGauges(nowhere, cache_seconds=0)
    assert set(_sweeps(gauges)) == {"ok", "error"}
    for url, counted, other in ((db_url, "ok", "error"), (nowhere, "error", "ok")):
        start = _sweeps(gauges)
        watcher = Failover(url, "sweeper", "v1", timeout=3, interval=0.01)
        watcher.start()
        try:
            poll(
                f"two {counted} sweeps",
                lambda: True if _sweeps(gauges)[counted] >= start[counted] + 2 else None,  # noqa: B023
                timeout=30,
            )
        finally:
            watcher.stop()
        assert _sweeps(gauges)[other] == start[other], (url, _sweeps(gauges), start)
