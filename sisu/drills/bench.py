"""`sisu bench`: end-to-end throughput and latency of sisu's intent runs on real worker
processes, against two baselines on the same queue, workers and database: raw DBOS (four no-op
steps) and the equal-work baseline (the same durable work written by hand on DBOS). Throughput
and latency come from `dbos.workflow_status` timestamps, not from the bench's clock; CPU per run
from /proc."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from psycopg import sql
from psycopg.types.json import Jsonb

from sisu import engine, names
from sisu.config import Settings
from sisu.contracts.ops import BenchResult, BurstLatency, CpuMs, CpuPerRun, LatencyMs
from sisu.contracts.runs import LANE_PRIORITY, IntentCreate, RunRequest
from sisu.db import migrations
from sisu.db.connection import connect
from sisu.db.queries import q
from sisu.db.url import redact, with_database
from sisu.drills import cpu
from sisu.drills.processes import WorkerProcess, wait_for
from sisu.service import intents
from sisu.service.backend import Backend

BASELINE_WORKFLOW = names.BENCH_BASELINE_WF
TX_BASELINE_WORKFLOW = names.BENCH_TX_BASELINE_WF
SUBMIT_THREADS = 4
WARMUP = 10
# The latency phase: at most this many runs of each kind, at half the measured throughput.
PACED_RUNS = 100


@contextmanager
def scratch_database(server_url: str) -> Iterator[str]:
    """A fresh, migrated database on the same server, dropped afterwards."""
    name = f"sisu_bench_{uuid.uuid4().hex[:8]}"
    admin = with_database(server_url, "postgres")
    with connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = with_database(server_url, name)
    try:
        migrations.migrate_app(url)
        migrations.migrate_dbos(url)
        yield url
    finally:
        with connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _percentile(values: list[float], pct: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1))))
    return round(ordered[k], 1)


class Phase(NamedTuple):
    """One phase's figures, all read from `dbos.workflow_status`."""

    per_sec: float  # workflows per second, first enqueue to last completion
    enqueue_to_start: LatencyMs
    run: LatencyMs
    failed: int  # runs that did not end in SUCCESS


def _timings(url: str, ids: list[str]) -> Phase:
    with connect(url) as conn:
        rows = conn.execute(q("bench_timings"), {"ids": ids}).fetchall()
    first = min(r["created_at"] for r in rows)
    last = max(r["completed_at"] or 0 for r in rows)
    per_sec = len(rows) / max((last - first) / 1000, 1e-3)
    e2s = [r["enqueue_to_start_ms"] for r in rows if r["enqueue_to_start_ms"] is not None]
    run = [r["run_ms"] for r in rows if r["run_ms"] is not None]
    return Phase(
        round(per_sec, 1),
        LatencyMs(p50=_percentile(e2s, 50), p99=_percentile(e2s, 99)),
        LatencyMs(p50=_percentile(run, 50), p99=_percentile(run, 99)),
        failed=sum(1 for r in rows if r["status"] != "SUCCESS") + len(ids) - len(rows),
    )


def _wait_done(url: str, ids: list[str], on_progress: Callable[[int], None]) -> None:
    # One connection for every probe: a connection per probe would start a PostgreSQL backend
    # ten times a second, CPU time that the phase's figures would then include.
    with connect(url, autocommit=True) as conn:

        def probe() -> bool | None:
            row = conn.execute(
                "SELECT count(*) FILTER (WHERE status IN ('SUCCESS', 'ERROR', 'CANCELLED'))"
                " AS done FROM dbos.workflow_status WHERE workflow_uuid = ANY(%(ids)s)",
                {"ids": ids},
            ).fetchone()
            done = int(row["done"]) if row else 0
            on_progress(done)
            return True if done >= len(ids) else None

        wait_for("the bench runs to finish", probe, timeout=600, interval=0.1)


def _submit_intent(backend: Backend, i: int) -> str:
    created = intents.create_intent(backend, IntentCreate(goal=f"bench {i}", inputs={"tasks": 1}))
    intents.start_run(backend, created.intent_id, RunRequest(trace_id="bench"))
    return created.intent_id


def _submit_baseline(backend: Backend, _: int) -> str:
    wid = f"bench-baseline-{uuid.uuid4()}"
    backend.client.enqueue(
        {
            "workflow_name": BASELINE_WORKFLOW,
            "queue_name": engine.INTENT_QUEUE,
            "workflow_id": wid,
            "app_version": backend.app_version,
        },
        wid,
    )
    return wid


def _submit_tx_baseline(backend: Backend, i: int) -> str:
    """The equal-work baseline's submission, as a user would write it by hand: the intent row,
    the run row and the workflow's enqueue in one transaction, with the same statements and
    the same queue, priority and app version as a sisu run."""
    run_id = str(uuid.uuid4())
    intent = IntentCreate(goal=f"bench {i}", inputs={"tasks": 1})
    request = {
        "runId": run_id,
        "goal": intent.goal,
        "inputs": intent.inputs,
        "constraints": intent.constraints,
        "connectors": intent.connectors,
    }
    with backend.transaction() as (conn, cur):
        cur.execute(
            q("insert_intent"),
            {
                "id": run_id,
                "goal": intent.goal,
                "inputs": Jsonb(intent.inputs),
                "constraints": Jsonb(intent.constraints),
                "connectors": Jsonb(intent.connectors),
                "repo": None,
                "ref": None,
                "commit_sha": None,
            },
        )
        cur.execute(
            q("insert_run"),
            {
                "id": run_id,
                "trace_id": "bench",
                "lane": "batch",
                "priority": LANE_PRIORITY["batch"],
                "queue_name": engine.INTENT_QUEUE,
                "app_version": backend.app_version,
            },
        )
        backend.client.enqueue_in_transaction(
            conn,
            {
                "workflow_name": TX_BASELINE_WORKFLOW,
                "queue_name": engine.INTENT_QUEUE,
                "workflow_id": run_id,
                "app_version": backend.app_version,
                "priority": LANE_PRIORITY["batch"],
            },
            run_id,
            request,
        )
    return run_id


Submit = Callable[[Backend, int], str]


def _burst(submit: Submit, backend: Backend, count: int) -> list[str]:
    """Submit `count` runs as fast as SUBMIT_THREADS threads can."""
    with ThreadPoolExecutor(SUBMIT_THREADS) as pool:
        return list(pool.map(partial(submit, backend), range(count)))


def _paced(submit: Submit, backend: Backend, count: int, per_sec: float) -> list[str]:
    """Submit `count` runs one by one on a fixed schedule (open loop: a late submission does
    not push the later ones back)."""
    ids = []
    start = time.monotonic()
    for i in range(count):
        delay = start + i / per_sec - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        ids.append(submit(backend, i))
    return ids


class CpuMeter:
    """CPU ticks of the workers and, when the server runs on this machine, of PostgreSQL."""

    def __init__(self, url: str, procs: list[WorkerProcess]) -> None:
        self.procs = procs
        found = cpu.find_postmaster(url, _database_name(url))
        self.postmaster = found if isinstance(found, cpu.Postmaster) else None
        self.note = found if isinstance(found, str) else None

    def sample(self) -> tuple[int, int | None]:
        pg = self.postmaster.ticks() if self.postmaster is not None else None
        return cpu.process_ticks([p.pid for p in self.procs]), pg

    @staticmethod
    def per_run(before: tuple[int, int | None], after: tuple[int, int | None], runs: int) -> CpuMs:
        workers = round(cpu.ticks_to_ms(after[0] - before[0]) / runs, 2)
        if after[1] is None or before[1] is None:
            return CpuMs(workers=workers, postgres=None, total=None)
        pg = round(cpu.ticks_to_ms(after[1] - before[1]) / runs, 2)
        # The sum of the figures shown, so that a reader's addition agrees.
        return CpuMs(workers=workers, postgres=pg, total=round(workers + pg, 2))


def _database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def _ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else 0.0


def run(
    server_url: str,
    settings: Settings,
    *,
    count: int,
    workers: int,
    concurrency: int | None,
    progress: Callable[[str, int, int], None] = lambda *_: None,
) -> BenchResult:
    """Throughput from a burst of `count` runs of each kind — sisu, the equal-work baseline,
    raw DBOS — with the CPU each burst cost; latency from a steady stream at half the measured
    throughput. In a burst, enqueue→start is time spent queued behind the other runs (it grows
    with `count`), not how quickly sisu picks a run up, so it is reported apart."""
    started = time.monotonic()
    with scratch_database(server_url) as url:
        procs = [
            WorkerProcess(
                url=url,
                executor_id=f"bench-{i}-{uuid.uuid4().hex[:6]}",
                app_version=settings.app_version,
                log_path=settings.logs_dir / "bench" / f"worker-{i}.log",
                concurrency=concurrency,
                extra_env={"SISU_HOME": str(settings.home)},
            ).start()
            for i in range(workers)
        ]
        backend = Backend.from_settings(url, settings, pool_size=SUBMIT_THREADS)

        def measure(label: str, ids: list[str]) -> Phase:
            _wait_done(url, ids, lambda n: progress(label, n, len(ids)))
            return _timings(url, ids)

        try:
            for p in procs:
                wait_for(
                    f"worker {p.executor_id}",
                    partial(_heartbeat, url, p.executor_id),
                    timeout=60,
                    worker=p,
                )
            meter = CpuMeter(url, procs)

            def burst(label: str, submit: Submit) -> tuple[Phase, CpuMs]:
                before = meter.sample()
                phase = measure(label, _burst(submit, backend, count))
                return phase, meter.per_run(before, meter.sample(), count)

            warm = [
                *_burst(_submit_intent, backend, WARMUP),
                *_burst(_submit_tx_baseline, backend, WARMUP),
                *_burst(_submit_baseline, backend, WARMUP),
            ]
            _wait_done(url, warm, lambda _: None)

            # The equal-work baseline right after sisu: their ratio is the one that matters,
            # and the machine's speed drifts.
            sisu, sisu_cpu = burst("sisu", _submit_intent)
            tx, tx_cpu = burst("equal-work baseline", _submit_tx_baseline)
            base, base_cpu = burst("baseline", _submit_baseline)
            paced_per_sec = max(1.0, round(sisu.per_sec / 2, 1))
            paced_runs = min(count, PACED_RUNS)
            sisu_paced = measure(
                "sisu, paced", _paced(_submit_intent, backend, paced_runs, paced_per_sec)
            )
            base_paced = measure(
                "baseline, paced", _paced(_submit_baseline, backend, paced_runs, paced_per_sec)
            )
        finally:
            backend.close()
            for p in procs:
                p.stop()
    return BenchResult(
        intents=count,
        workers=workers,
        seconds=round(time.monotonic() - started, 2),
        intents_per_sec=sisu.per_sec,
        baseline_per_sec=base.per_sec,
        ratio=_ratio(sisu.per_sec, base.per_sec),
        tx_baseline_per_sec=tx.per_sec,
        tx_ratio=_ratio(sisu.per_sec, tx.per_sec),
        cpu_ms_per_run=CpuPerRun(
            sisu=sisu_cpu, baseline=base_cpu, tx_baseline=tx_cpu, postgres_note=meter.note
        ),
        enqueue_to_start_ms=sisu_paced.enqueue_to_start,
        run_ms=sisu_paced.run,
        baseline_enqueue_to_start_ms=base_paced.enqueue_to_start,
        baseline_run_ms=base_paced.run,
        paced_per_sec=paced_per_sec,
        paced_runs=paced_runs,
        burst=BurstLatency(
            enqueue_to_start_ms=sisu.enqueue_to_start,
            run_ms=sisu.run,
            baseline_enqueue_to_start_ms=base.enqueue_to_start,
            baseline_run_ms=base.run,
        ),
        failed_runs=sisu.failed + sisu_paced.failed,
        baseline_failed_runs=base.failed + base_paced.failed,
        tx_baseline_failed_runs=tx.failed,
        database=redact(server_url),
    )


def _heartbeat(url: str, executor_id: str) -> Any:
    with connect(url) as conn:
        return conn.execute(
            "SELECT 1 AS ok FROM app.workers WHERE executor_id = %s", (executor_id,)
        ).fetchone()
