"""Shared by the scale-out tests (tests/drills/test_scale_out.py, tests/acceptance/test_workers.py):
`sisu worker` children with the flags `WorkerProcess` has no field for (`--failover-timeout`,
`--grace`), a readiness probe, runs submitted through the service layer, and row readers."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from sisu.drills.processes import WorkerProcess
from tests.helpers import rows, scalar
from tests.runloop_support import poll

SLOW_GOAL = "scale-out drill: deliver one task slowly"


@dataclass
class FleetWorker(WorkerProcess):
    """A `WorkerProcess` with a clean environment, as on a machine of its own."""

    clean_env: bool = True


def fleet_worker(
    url: str,
    tmp_path: Path,
    executor_id: str,
    *,
    app_version: str = "v1",
    concurrency: int | None = None,
    args: tuple[str, ...] = (),
    home: str | None = None,
) -> FleetWorker:
    """A worker (not started) with its own home, as if on a machine of its own; `home` shares
    one (a restart of the same worker)."""
    return FleetWorker(
        url=url,
        executor_id=executor_id,
        app_version=app_version,
        log_path=tmp_path / "logs" / f"{executor_id}-{uuid.uuid4().hex[:4]}.log",
        admin_port=0,
        concurrency=concurrency,
        extra_env={"SISU_HOME": home or str(tmp_path / f"home-{executor_id}")},
        extra_args=args,
    )


def new_executor_id(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def wait_ready(url: str, worker: WorkerProcess, *, timeout: float = 40) -> None:
    """Until this very process (by pid) has launched DBOS: its admin /healthz says ok."""

    def probe() -> bool | None:
        if not worker.alive():
            raise AssertionError(f"worker {worker.executor_id} died:\n{worker.log_tail()}")
        port = scalar(
            url,
            "SELECT admin_port FROM app.workers WHERE executor_id = %s AND pid = %s",
            (worker.executor_id, worker.pid),
        )
        if port is None:
            return None
        try:
            body = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).json()
        except (httpx.TransportError, ValueError):
            return None
        return True if body.get("ok") is True else None

    poll(f"worker {worker.executor_id} to be ready", probe, timeout=timeout, interval=0.1)


def wait_heartbeat_after_ready(url: str, worker: WorkerProcess, *, timeout: float = 10) -> None:
    """Until the worker's heartbeat thread has refreshed its row once since it became ready.

    Used where a test means to look past the start-up window (test_scale_out.py tests that
    window on its own)."""
    ready_at = scalar(url, "SELECT now()")

    def probe() -> bool | None:
        if not worker.alive():
            raise AssertionError(f"worker {worker.executor_id} died:\n{worker.log_tail()}")
        beat = scalar(
            url,
            "SELECT heartbeat_at > %s FROM app.workers WHERE executor_id = %s AND pid = %s",
            (ready_at, worker.executor_id, worker.pid),
        )
        return True if beat else None

    poll(f"worker {worker.executor_id} to heartbeat", probe, timeout=timeout, interval=0.05)


def submit(
    url: str, count: int, inputs: dict[str, Any], *, app_version: str = "v1", goal: str = SLOW_GOAL
) -> list[str]:
    """Create `count` intents and start their runs through the service layer, as `sisu serve`
    and the CLI do; returns the run ids."""
    from sisu.contracts.runs import IntentCreate, RunRequest
    from sisu.service.backend import Backend
    from sisu.service.intents import create_intent, start_run

    backend = Backend(url, app_version=app_version)
    try:
        ids = []
        for _ in range(count):
            intent = create_intent(backend, IntentCreate(goal=goal, inputs=inputs))
            started = start_run(backend, intent.intent_id, RunRequest())
            assert started.run_id == intent.intent_id
            ids.append(started.run_id)
        return ids
    finally:
        backend.close()


def workflows(url: str, ids: list[str]) -> dict[str, dict[str, Any]]:
    """dbos.workflow_status of each run, by run id."""
    found = rows(
        url,
        "SELECT workflow_uuid, status, executor_id, application_version, recovery_attempts, "
        "updated_at FROM dbos.workflow_status WHERE workflow_uuid = ANY(%s)",
        (ids,),
    )
    return {r["workflow_uuid"]: r for r in found}


def pending_by_executor(url: str, ids: list[str]) -> dict[str, list[str]]:
    held: dict[str, list[str]] = {}
    for wid, w in sorted(workflows(url, ids).items()):
        if w["status"] == "PENDING":
            held.setdefault(w["executor_id"], []).append(wid)
    return held


def in_execute(url: str, ids: list[str]) -> set[str]:
    """Runs inside ExecuteST right now: DecideST done, not finished."""
    found = rows(
        url,
        "SELECT id FROM app.runs WHERE id = ANY(%s) AND status = 'running' "
        "AND last_step = 'DecideST'",
        (ids,),
    )
    return {r["id"] for r in found}


def statuses(url: str, ids: list[str]) -> dict[str, str]:
    found = rows(url, "SELECT id, status FROM app.runs WHERE id = ANY(%s)", (ids,))
    return {r["id"]: r["status"] for r in found}


def wait_all_done(
    url: str, ids: list[str], *, timeout: float, watch: tuple[WorkerProcess, ...] = ()
) -> float:
    """Until every run succeeded in app.runs and its workflow is SUCCESS; returns the time it
    took. Fails at once when a run ends otherwise or a watched worker dies."""
    start = time.monotonic()
    terminal_bad = {"failed", "canceled", "retries_exceeded"}

    def probe() -> bool | None:
        st = statuses(url, ids)
        bad = {k: v for k, v in st.items() if v in terminal_bad}
        if bad:
            raise AssertionError(f"runs ended badly: {bad}")
        for w in watch:
            if not w.alive():
                raise AssertionError(f"worker {w.executor_id} died:\n{w.log_tail()}")
        wf = workflows(url, ids)
        done = all(st.get(i) == "succeeded" for i in ids) and all(
            wf.get(i, {}).get("status") == "SUCCESS" for i in ids
        )
        return True if done else None

    poll(f"{len(ids)} run(s) to succeed", probe, timeout=timeout, interval=0.1)
    return time.monotonic() - start


def succeeded_attempts(url: str, ids: list[str], step_id: str) -> dict[str, int]:
    found = rows(
        url,
        "SELECT run_id, count(*)::int AS n FROM app.run_steps WHERE run_id = ANY(%s) "
        "AND step_id = %s AND phase = 'succeeded' GROUP BY run_id",
        (ids, step_id),
    )
    return {r["run_id"]: r["n"] for r in found}


def recorded(url: str, rid: str, step_id: str) -> bool:
    """DBOS has recorded the step's outcome in dbos.operation_outputs."""
    n = scalar(
        url,
        "SELECT count(*) FROM dbos.operation_outputs WHERE workflow_uuid = %s "
        "AND function_name = %s",
        (rid, step_id),
    )
    return bool(n)


def receipts(url: str, ids: list[str]) -> list[dict[str, Any]]:
    return rows(
        url,
        "SELECT receipt_key, run_id, seen_count FROM app.mock_receipts WHERE run_id = ANY(%s) "
        "ORDER BY receipt_key",
        (ids,),
    )


def worker_row(url: str, executor_id: str) -> dict[str, Any] | None:
    found = rows(url, "SELECT * FROM app.workers WHERE executor_id = %s", (executor_id,))
    return found[0] if found else None
