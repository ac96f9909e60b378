"""Read models: RunView and run listings, built from `app.*` rows."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sisu.contracts.runs import (
    RUN_STATUSES,
    TERMINAL_STATUSES,
    ArtifactView,
    CompilerCall,
    CompilerView,
    RunPage,
    RunSummary,
    RunView,
    StepView,
)
from sisu.db.queries import q
from sisu.errors import InvalidState, NotFound, TimedOut, ValidationFailed
from sisu.service import paging
from sisu.service.backend import Backend


def get_run(backend: Backend, run_id: str) -> RunView:
    with backend.read() as cur:
        cur.execute(q("get_run"), {"id": run_id})
        run = cur.fetchone()
        if run is None:
            raise NotFound(f"run {run_id} not found", details={"runId": run_id})
        steps = cur.execute(q("run_steps"), {"run_id": run_id}).fetchall()
        artifacts = cur.execute(q("run_artifacts"), {"run_id": run_id}).fetchall()
        compiler = cur.execute(q("run_compiler_summary"), {"run_id": run_id}).fetchone()
    return RunView(
        run_id=run["id"],
        intent_id=run["id"],
        workflow_id=run["id"],
        status=run["status"],
        next_action=run["next_action"],
        last_step=run["last_step"],
        retry_count=run["retry_count"],
        trace_id=run["trace_id"],
        lane=run["lane"],
        priority=run["priority"],
        compiler=CompilerView(**compiler) if compiler else None,
        steps=[StepView(**s) for s in steps],
        artifacts=[ArtifactView(**a) for a in artifacts],
        created_at=run["created_at"],
        updated_at=run["updated_at"],
    )


def list_calls(backend: Backend, run_id: str) -> list[CompilerCall]:
    """The run's compiler calls, oldest first; 404 for an unknown run."""
    with backend.read() as cur:
        if cur.execute(q("get_run"), {"id": run_id}).fetchone() is None:
            raise NotFound(f"run {run_id} not found", details={"runId": run_id})
        rows = cur.execute(q("run_compiler_calls"), {"run_id": run_id}).fetchall()
    return [CompilerCall(**r) for r in rows]


def run_patch(backend: Backend, run_id: str) -> str:
    """The run's change as a unified diff against its intent's commit (an empty string when the
    plan changed nothing); 404 for an unknown run, 409 before ApplyPatchST has succeeded."""
    with backend.read() as cur:
        if cur.execute(q("get_run"), {"id": run_id}).fetchone() is None:
            raise NotFound(f"run {run_id} not found", details={"runId": run_id})
        row = cur.execute(q("run_patch"), {"run_id": run_id}).fetchone()
    if row is None:
        raise InvalidState(
            f"run {run_id} has no patch yet: its ApplyPatchST has not succeeded",
            details={"runId": run_id},
        )
    return str(row["inline"]["diff"])


def list_runs(
    backend: Backend,
    *,
    status: str | None = None,
    limit: int = paging.DEFAULT_LIMIT,
    after: str | None = None,
) -> RunPage:
    """A page of runs, newest first (`status`: only those), after the cursor `after` (the
    `next` of the previous page; None for the first page)."""
    if status is not None and status not in RUN_STATUSES:
        raise ValidationFailed(
            f"unknown status {status!r}",
            details=[{"field": "status", "allowed": list(RUN_STATUSES)}],
        )
    paging.check_limit(limit)
    params = {**paging.start("runs", after), "status": status, "limit": limit + 1}
    query = q("list_runs") if status is None else q("list_runs_by_status")
    with backend.read() as cur:
        rows: list[dict[str, Any]] = cur.execute(query, params).fetchall()
    page, more = paging.split(rows, limit)
    last = page[-1] if page else None
    return RunPage(
        items=[
            RunSummary(
                run_id=r["id"],
                intent_id=r["id"],
                status=r["status"],
                next_action=r["next_action"],
                last_step=r["last_step"],
                retry_count=r["retry_count"],
                trace_id=r["trace_id"],
                lane=r["lane"],
                priority=r["priority"],
                created_at=r["created_at"],
                updated_at=r["updated_at"],
            )
            for r in page
        ],
        next=paging.encode("runs", paging.Position(last["created_at"], last["id"]))
        if more and last
        else None,
    )


SETTLED_STATUSES = TERMINAL_STATUSES | {"waiting_input"}


@dataclass(frozen=True)
class Unserved:
    """A queued run no live worker can take: none of its app version listens on its queue."""

    app_version: str
    queue: str


def unserved(backend: Backend, run_id: str, *, dead_after_seconds: float) -> Unserved | None:
    """Why the run cannot start now, or None: it is not enqueued, or a live worker of its app
    version serves its queue (and will take it when it has a free slot)."""
    with backend.read() as cur:
        row = cur.execute(
            q("run_unserved"), {"run_id": run_id, "dead_after_seconds": dead_after_seconds}
        ).fetchone()
    return None if row is None else Unserved(row["app_version"], row["queue_name"])


def wait_until_settled(
    backend: Backend,
    run_id: str,
    *,
    timeout: float | None,
    on_view: Callable[[RunView], None] = lambda _: None,
    interval: float = 0.2,
) -> RunView:
    """Poll the run until it is terminal or waiting for a human; `on_view` sees every poll.
    Raises TimedOut when `timeout` seconds pass first."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        view = get_run(backend, run_id)
        on_view(view)
        if view.status in SETTLED_STATUSES:
            return view
        if deadline is not None and time.monotonic() > deadline:
            raise TimedOut(
                f"run {run_id} is still {view.status} after {timeout:g}s",
                details={"runId": run_id, "status": view.status},
            )
        time.sleep(interval)
