"""Runs for the tests: started through the service layer (as `sisu serve` and the CLI start
them), read from their rows, and waited on until their status says so."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sisu.drills.processes import WorkerProcess
from tests.support.db import rows, scalar
from tests.support.polling import poll

# The four stable steps, spelled here apart from sisu.names: the tests hold sisu to them.
STEP_IDS = ["CompileST", "ApplyPatchST", "DecideST", "ExecuteST"]
FAST_RUN_POLICY = {"maxAttempts": 3, "backoffSeconds": 0.05}
ASK_GOAL = "please ask the operator for the answer"
ANSWER = {"answer": "42"}
SLOW_GOAL = "scale-out drill: deliver one task slowly"
FAILED_STATUSES = {"failed", "canceled", "retries_exceeded"}


# --- starting runs -------------------------------------------------------------------------


@contextmanager
def fast_backend(url: str) -> Iterator[Any]:
    """The service layer in this process, starting runs with fast step retries."""
    from sisu.service.backend import Backend

    b = Backend(url, app_version="v1", run_policy=dict(FAST_RUN_POLICY))
    try:
        yield b
    finally:
        b.close()


def start_intent(
    backend: Any,
    goal: str = "demo",
    *,
    inputs: dict[str, Any] | None = None,
    constraints: dict[str, Any] | None = None,
    **run: Any,
) -> str:
    """Create an intent and start its run through the service layer; returns the run id."""
    from sisu.contracts.runs import IntentCreate, RunRequest
    from sisu.service import intents

    created = intents.create_intent(
        backend, IntentCreate(goal=goal, inputs=inputs or {}, constraints=constraints or {})
    )
    intents.start_run(backend, created.intent_id, RunRequest.model_validate(run))
    return created.intent_id


def submit(
    url: str, count: int, inputs: dict[str, Any], *, app_version: str = "v1", goal: str = SLOW_GOAL
) -> list[str]:
    """Create `count` intents and start their runs with a backend of their own; returns the
    run ids."""
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


# --- rows ----------------------------------------------------------------------------------


def run_row(url: str, run_id: str) -> dict[str, Any]:
    found = rows(url, "SELECT * FROM app.runs WHERE id = %s", (run_id,))
    assert len(found) == 1, found
    return found[0]


def run_status(url: str, run_id: str) -> str | None:
    value = scalar(url, "SELECT status FROM app.runs WHERE id = %s", (run_id,))
    return None if value is None else str(value)


def statuses(url: str, ids: list[str]) -> dict[str, str]:
    found = rows(url, "SELECT id, status FROM app.runs WHERE id = ANY(%s)", (ids,))
    return {r["id"]: r["status"] for r in found}


def workflow_row(url: str, workflow_id: str) -> dict[str, Any] | None:
    found = rows(url, "SELECT * FROM dbos.workflow_status WHERE workflow_uuid = %s", (workflow_id,))
    return found[0] if found else None


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


def step_attempts(url: str, run_id: str) -> list[tuple[str, int, str]]:
    """(step_id, attempt, phase) of every attempt row, in step then attempt order."""
    found = rows(
        url,
        "SELECT step_id, attempt, phase FROM app.run_steps WHERE run_id = %s "
        "ORDER BY array_position(%s::text[], step_id), attempt",
        (run_id, STEP_IDS),
    )
    return [(r["step_id"], r["attempt"], r["phase"]) for r in found]


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


def human_event_count(url: str, run_id: str) -> int:
    return int(scalar(url, "SELECT count(*) FROM app.human_events WHERE run_id = %s", (run_id,)))


def receipts(url: str, ids: list[str]) -> list[dict[str, Any]]:
    return rows(
        url,
        "SELECT receipt_key, run_id, seen_count FROM app.mock_receipts WHERE run_id = ANY(%s) "
        "ORDER BY receipt_key",
        (ids,),
    )


# --- waiting -------------------------------------------------------------------------------


def wait_run_status(
    url: str,
    run_id: str,
    want: str = "succeeded",
    *,
    timeout: float = 60,
    worker: WorkerProcess | None = None,
) -> str:
    """Wait until app.runs says `want`; fail at once on another terminal status or a dead worker."""
    terminal = {"succeeded", *FAILED_STATUSES}

    def probe() -> str | None:
        status = run_status(url, run_id)
        if status == want:
            return status
        if status in terminal:
            raise AssertionError(f"run {run_id} ended {status}, wanted {want}")
        if worker is not None and not worker.alive():
            raise AssertionError(
                f"worker {worker.executor_id} died; log tail:\n{worker.log_tail()}"
            )
        return None

    return poll(f"run {run_id} to be {want}", probe, timeout=timeout)


def wait_workflow_status(
    url: str, workflow_id: str, want: str = "SUCCESS", *, timeout: float = 30
) -> str:
    """Wait until dbos.workflow_status says `want`. The run's last step commits `succeeded` into
    app.runs a moment before DBOS records the workflow's own completion, so read both."""

    def probe() -> str | None:
        status = scalar(
            url, "SELECT status FROM dbos.workflow_status WHERE workflow_uuid = %s", (workflow_id,)
        )
        return want if status == want else None

    return poll(f"workflow {workflow_id} to be {want}", probe, timeout=timeout)


def wait_run_done(
    url: str, run_id: str, *, worker: WorkerProcess | None = None, timeout: float = 60
) -> None:
    """The run succeeded in app.runs and its workflow is SUCCESS in dbos.workflow_status."""
    wait_run_status(url, run_id, "succeeded", worker=worker, timeout=timeout)
    wait_workflow_status(url, run_id, "SUCCESS")


def wait_all_done(
    url: str, ids: list[str], *, timeout: float, watch: tuple[WorkerProcess, ...] = ()
) -> float:
    """Until every run succeeded in app.runs and its workflow is SUCCESS; returns the time it
    took. Fails at once when a run ends otherwise or a watched worker dies."""
    start = time.monotonic()

    def probe() -> bool | None:
        st = statuses(url, ids)
        bad = {k: v for k, v in st.items() if v in FAILED_STATUSES}
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
