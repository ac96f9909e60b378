"""The crash demo (Walkthrough A): kill -9 a worker inside CrashDemoWF's durable sleep, restart it
with the same executor id, and prove from rows that the workflow finished with each mark once."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from psycopg.types.json import Jsonb

from sisu import engine, names
from sisu.contracts.ops import CrashDemoResult, MarkCounts
from sisu.db.connection import connect
from sisu.db.queries import q
from sisu.drills.processes import WorkerProcess, wait_for
from sisu.errors import DrillFailed

WORKFLOW_NAME = names.CRASH_DEMO_WF  # by name: drills never import wf
TERMINAL = names.DBOS_TERMINAL_STATUSES


def _marks(url: str, workflow_id: str) -> dict[str, dict[str, Any]]:
    with connect(url) as conn:
        rows = conn.execute(q("mark_counts"), {"workflow_id": workflow_id}).fetchall()
    return {r["step"]: r for r in rows}


def _status(url: str, workflow_id: str) -> str | None:
    with connect(url) as conn:
        row = conn.execute(q("workflow_status"), {"workflow_id": workflow_id}).fetchone()
    return row["status"] if row else None


def run(
    url: str,
    *,
    app_version: str,
    sleep_seconds: float,
    logs_dir: Path,
    progress: Callable[[str], None] = lambda _: None,
) -> CrashDemoResult:
    started = time.monotonic()
    workflow_id = f"crashdemo-{uuid.uuid4()}"
    # A fresh executor id per drill, reused by the restarted worker: recovery is per executor id.
    executor_id = f"crashdemo-{uuid.uuid4().hex[:8]}"
    log_path = logs_dir / f"{executor_id}.log"
    with connect(url) as conn:
        conn.execute(q("record_drill_start"), {"workflow_id": workflow_id, "kind": "crashdemo"})

    client = engine.client(url)
    try:
        client.enqueue(
            {
                "workflow_name": WORKFLOW_NAME,
                "queue_name": engine.DRILL_QUEUE,
                "workflow_id": workflow_id,
                "app_version": app_version,
            },
            sleep_seconds,
        )
    finally:
        client.destroy()
    progress(f"enqueued {workflow_id}")

    def spawn() -> WorkerProcess:
        return WorkerProcess(
            url=url,
            executor_id=executor_id,
            app_version=app_version,
            log_path=log_path,
            queues=(engine.DRILL_QUEUE,),
        ).start()

    first = spawn()
    second: WorkerProcess | None = None
    try:
        progress(f"worker pid {first.pid} started; waiting for mark s1")
        wait_for(
            "mark s1",
            lambda: _marks(url, workflow_id).get("s1"),
            timeout=60 + sleep_seconds,
            worker=first,
        )
        killed_at = datetime.now(UTC)
        killed_pid = first.pid
        first.kill()
        if "s2" in _marks(url, workflow_id):
            raise DrillFailed(
                "s2 was marked before the kill landed: the sleep is too short; raise --sleep"
            )
        with connect(url) as conn:
            conn.execute(
                q("record_drill_kill"),
                {"workflow_id": workflow_id, "killed_pid": killed_pid, "killed_at": killed_at},
            )
        progress(f"killed worker pid {killed_pid} with SIGKILL during the durable sleep")

        second = spawn()
        progress(f"restarted worker as pid {second.pid}; waiting for the workflow to finish")
        status = wait_for(
            "the workflow to finish",
            lambda: s if (s := _status(url, workflow_id)) in TERMINAL else None,
            timeout=60 + sleep_seconds,
            worker=second,
        )
        resumed_pid = second.pid
    finally:
        first.kill()
        if second is not None:
            second.stop()

    marks = _marks(url, workflow_id)
    counts = MarkCounts(
        s1=marks["s1"]["n"] if "s1" in marks else 0, s2=marks["s2"]["n"] if "s2" in marks else 0
    )
    ok = status == "SUCCESS" and counts.s1 == 1 and counts.s2 == 1
    result = CrashDemoResult(
        ok=ok,
        workflow_id=workflow_id,
        status=status,
        marks=counts,
        killed_pid=killed_pid,
        resumed_pid=resumed_pid,
        killed_at=killed_at,
        elapsed_seconds=round(time.monotonic() - started, 3),
    )
    with connect(url) as conn:
        conn.execute(
            q("record_drill_end"),
            {
                "workflow_id": workflow_id,
                "resumed_pid": resumed_pid,
                "ok": ok,
                "detail": Jsonb(result.model_dump(mode="json", by_alias=True)),
            },
        )
    return result
