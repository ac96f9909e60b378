"""Shared pieces of the queue-policy, HITL and repair-lane tests: environments for `sisu`
children, real workers on the queues these tests need (and a way to know one is ready), a
service-layer backend with fast retries, and row readers."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from sisu.drills.processes import WorkerProcess
from tests.helpers import rows, scalar
from tests.runloop_support import INTENT_QUEUE, poll

PARTITIONED_QUEUE = "sisu-intents-partitioned"
# Retries happen in these tests; a step's first retry waits this long (then doubles).
FAST_BACKOFF = "0.05"
FAST_RUN_POLICY = {"maxAttempts": 3, "backoffSeconds": 0.05}
ASK_GOAL = "please ask the operator for the answer"
ANSWER = {"answer": "42"}


def sisu_env(url: str, home: Path, **extra: str) -> dict[str, str]:
    """Environment for a `sisu` child bound to `url` (like the `sisu_env` fixture)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SISU_", "DBOS__"))}
    env.update(
        SISU_DATABASE_URL=url,
        SISU_HOME=str(home),
        SISU_STEP_BACKOFF_SECONDS=FAST_BACKOFF,
        NO_COLOR="1",
        COLUMNS="200",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def new_worker(
    url: str,
    tmp_path: Path,
    *,
    name: str,
    queues: tuple[str, ...] = (INTENT_QUEUE,),
    concurrency: int | None = None,
    executor_id: str | None = None,
) -> WorkerProcess:
    """A `sisu worker` child (not started) with fast step retries."""
    executor_id = executor_id or f"{name}-{uuid.uuid4().hex[:10]}"
    return WorkerProcess(
        url=url,
        executor_id=executor_id,
        app_version="v1",
        queues=queues,
        concurrency=concurrency,
        log_path=tmp_path / "logs" / f"{executor_id}-{uuid.uuid4().hex[:4]}.log",
        extra_env={"SISU_HOME": str(tmp_path / "home"), "SISU_STEP_BACKOFF_SECONDS": FAST_BACKOFF},
    )


@contextmanager
def worker_running(
    url: str,
    tmp_path: Path,
    *,
    name: str,
    queues: tuple[str, ...] = (INTENT_QUEUE,),
    concurrency: int | None = None,
) -> Iterator[WorkerProcess]:
    """A started worker. Torn down with SIGKILL: runs left waiting for a human (or sleeping in a
    step) would hold a graceful stop for its whole grace period, and the database is dropped
    after the test anyway."""
    worker = new_worker(url, tmp_path, name=name, queues=queues, concurrency=concurrency)
    try:
        worker.start()
        yield worker
    finally:
        worker.kill()


def wait_worker_ready(url: str, worker: WorkerProcess, *, timeout: float = 30) -> None:
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
            r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
        except httpx.TransportError:
            return None
        return True if r.status_code == 200 and r.json().get("ok") else None

    poll(f"worker {worker.executor_id} to be ready", probe, timeout=timeout, interval=0.1)


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


def run_row(url: str, run_id: str) -> dict[str, Any]:
    found = rows(url, "SELECT * FROM app.runs WHERE id = %s", (run_id,))
    assert len(found) == 1, found
    return found[0]


def workflow_row(url: str, workflow_id: str) -> dict[str, Any] | None:
    found = rows(url, "SELECT * FROM dbos.workflow_status WHERE workflow_uuid = %s", (workflow_id,))
    return found[0] if found else None


def step_attempts(url: str, run_id: str) -> list[tuple[str, int, str]]:
    """(step_id, attempt, phase) of every attempt row, in step then attempt order."""
    found = rows(
        url,
        "SELECT step_id, attempt, phase FROM app.run_steps WHERE run_id = %s "
        "ORDER BY array_position(ARRAY['CompileST','ApplyPatchST','DecideST','ExecuteST'], "
        "step_id), attempt",
        (run_id,),
    )
    return [(r["step_id"], r["attempt"], r["phase"]) for r in found]


def human_event_count(url: str, run_id: str) -> int:
    return int(scalar(url, "SELECT count(*) FROM app.human_events WHERE run_id = %s", (run_id,)))


def wait_dbos_status(url: str, workflow_id: str, want: str, *, timeout: float = 30) -> None:
    def probe() -> bool | None:
        row = workflow_row(url, workflow_id)
        return True if row is not None and row["status"] == want else None

    poll(f"workflow {workflow_id} to be {want}", probe, timeout=timeout)
