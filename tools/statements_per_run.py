"""Statements per run of each `sisu bench` kind — sisu, the equal-work baseline, raw DBOS — from
`pg_stat_statements`, on one worker and a scratch database (docs/PERFORMANCE.md).

The server must preload the extension. For an embedded server of a home of its own:

    export SISU_HOME=/tmp/sisu-prof
    sisu db up
    sisu db psql -- -c "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'"
    sisu db down && sisu db up
    .venv/bin/python tools/statements_per_run.py 60

Statements that poll (the workers' queue pollers, heartbeats) are per second, not per run: the
tool counts them on the idle worker first and subtracts that rate times each burst's duration
(`net`); the listing shows the raw counts."""

from __future__ import annotations

import sys
import time
import uuid
from functools import partial
from typing import Any

from sisu.config import Settings
from sisu.db.connection import connect
from sisu.db.url import resolve
from sisu.drills import bench
from sisu.drills.processes import WorkerProcess, wait_for
from sisu.service.backend import Backend

KINDS = {
    "sisu": bench._submit_intent,
    "equal-work baseline": bench._submit_tx_baseline,
    "raw DBOS": bench._submit_baseline,
}
# The profiler's own statements.
IGNORED = ("pg_stat_statements", "count(*) FILTER")


def main(runs: int) -> None:
    settings = Settings()
    server = resolve(settings, start=True)
    assert server is not None
    with bench.scratch_database(server) as url:
        with connect(url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        worker = WorkerProcess(
            url=url,
            executor_id=f"statements-{uuid.uuid4().hex[:6]}",
            app_version=settings.app_version,
            log_path=settings.logs_dir / "bench" / "statements.log",
            extra_env={"SISU_HOME": str(settings.home)},
        ).start()
        backend = Backend.from_settings(url, settings, pool_size=bench.SUBMIT_THREADS)
        try:
            wait_for(
                "the worker",
                partial(bench._heartbeat, url, worker.executor_id),
                timeout=60,
                worker=worker,
            )
            warm = [i for s in KINDS.values() for i in bench._burst(s, backend, bench.WARMUP)]
            bench._wait_done(url, warm, lambda _: None)
            idle = _idle_rate(url)
            print(f"idle: {idle:.1f} statements per second")
            for label, submit in KINDS.items():
                _count(url, backend, label, submit, runs, idle)
        finally:
            backend.close()
            worker.stop()


def _reset(url: str) -> None:
    with connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_statements_reset()")


def _statements(url: str) -> list[dict[str, Any]]:
    with connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT s.calls, left(regexp_replace(s.query, '\\s+', ' ', 'g'), 110) AS query"
            " FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid"
            " WHERE d.datname = current_database() ORDER BY s.calls DESC"
        ).fetchall()
    return [r for r in rows if not any(word in r["query"] for word in IGNORED)]


def _idle_rate(url: str, seconds: float = 5.0) -> float:
    _reset(url)
    time.sleep(seconds)
    return sum(r["calls"] for r in _statements(url)) / seconds


def _count(
    url: str, backend: Backend, label: str, submit: bench.Submit, runs: int, idle: float
) -> None:
    _reset(url)
    started = time.monotonic()
    bench._wait_done(url, bench._burst(submit, backend, runs), lambda _: None)
    seconds = time.monotonic() - started
    rows = _statements(url)
    total = sum(r["calls"] for r in rows)
    net = (total - idle * seconds) / runs
    print(
        f"== {label}: {net:.1f} statements per run net, {total / runs:.1f} raw "
        f"({runs} runs in {seconds:.1f} s)"
    )
    for r in rows:
        print(f"  {r['calls'] / runs:6.2f}  {r['query']}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 60)
