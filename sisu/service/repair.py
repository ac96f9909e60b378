"""The repair lane and cancel: retry a run that ran out of attempts (the same workflow resumes at
the failed step) and cancel a run that is not finished."""

from __future__ import annotations

from typing import Any

from psycopg.types.json import Jsonb

from sisu import names
from sisu.contracts.runs import RUN_STATUSES, TERMINAL_STATUSES, CancelAccepted, RetryAccepted
from sisu.db.queries import q
from sisu.errors import InvalidState, NotFound, ValidationFailed
from sisu.service.backend import Backend, Cursor

RETRYABLE = names.RETRYABLE_STATUSES


def _locked_run(cur: Cursor, run_id: str) -> dict[str, Any]:
    run = cur.execute(q("lock_run"), {"id": run_id}).fetchone()
    if run is None:
        raise NotFound(f"run {run_id} not found", details={"runId": run_id})
    return run


def retry_run(backend: Backend, run_id: str) -> RetryAccepted:
    """Rewind the run's workflow (same id) to just after its last succeeded stable step, i.e. to
    the first attempt of the step that failed (or to the question, for a run whose question
    timed out): the steps before it replay from their checkpoints and are not executed again."""
    with backend.transaction() as (_, cur):
        run = _locked_run(cur, run_id)
        if run["status"] not in RETRYABLE:
            raise InvalidState(
                f"run {run_id} is {run['status']}; only {' or '.join(RETRYABLE)} runs are retried",
                details={"runId": run_id, "status": run["status"], "expected": list(RETRYABLE)},
            )
        from_step = (run["error"] or {}).get("step") or "CompileST"
        row = cur.execute(q("retry_start_step"), {"workflow_id": run_id}).fetchone()
        start_step = int(row["start_step"]) if row else 1
        # DBOS's client-side rewind leaves datasource checkpoints alone; drop those of the
        # rewound steps first (as DBOS's own rewind does), or the failure would just replay.
        # Committed before the rewind, so no worker can pick the workflow up and see them.
        cur.execute(
            q("delete_datasource_checkpoints"), {"workflow_id": run_id, "start_step": start_step}
        )
        cur.execute(q("run_retried"), {"run_id": run_id})
    try:
        backend.client.rewind_workflow(run_id, start_step=start_step)
    except Exception:
        with backend.transaction() as (_, cur):
            cur.execute(
                q("run_retry_undone"),
                {
                    "run_id": run_id,
                    "status": run["status"],
                    "next_action": run["next_action"],
                    "error": Jsonb(run["error"]),
                },
            )
        raise
    return RetryAccepted(accepted=True, run_id=run_id, from_step=from_step)


def cancel_run(backend: Backend, run_id: str) -> CancelAccepted:
    with backend.transaction() as (_, cur):
        run = _locked_run(cur, run_id)
        if run["status"] in TERMINAL_STATUSES:
            raise InvalidState(
                f"run {run_id} is already {run['status']}",
                details={"runId": run_id, "status": run["status"]},
            )
        backend.client.cancel_workflow(run_id)
        cur.execute(q("run_canceled"), {"run_id": run_id})
    return CancelAccepted(accepted=True, run_id=run_id, status="canceled")


def run_ids_with_status(backend: Backend, status: str) -> list[str]:
    if status not in RUN_STATUSES:
        raise ValidationFailed(
            f"unknown status {status!r}",
            details=[{"field": "status", "allowed": list(RUN_STATUSES)}],
        )
    with backend.read() as cur:
        rows = cur.execute(q("run_ids_by_status"), {"status": status}).fetchall()
    return [r["id"] for r in rows]


def resume_run(backend: Backend, run_id: str, app_version: str) -> dict[str, Any]:
    """Move a run that is stranded (queued, or pending on a dead worker) to another app version:
    the same workflow is cancelled and rewound to its next unfinished step under `app_version`,
    so completed steps are kept. The new version's code must be able to continue it."""
    with backend.transaction() as (_, cur):
        run = _locked_run(cur, run_id)
        if run["status"] in TERMINAL_STATUSES:
            raise InvalidState(
                f"run {run_id} is {run['status']}; only unfinished runs can be moved",
                details={"runId": run_id, "status": run["status"]},
            )
        point = cur.execute(q("workflow_resume_point"), {"workflow_id": run_id}).fetchone()
        if point is None or point["status"] not in ("ENQUEUED", "PENDING"):
            raise InvalidState(
                f"run {run_id}'s workflow is {point['status'] if point else 'missing'}",
                details={"runId": run_id},
            )
        start_step = int(point["start_step"])
        backend.client.cancel_workflow(run_id)
        cur.execute(
            q("delete_datasource_checkpoints"), {"workflow_id": run_id, "start_step": start_step}
        )
        backend.client.rewind_workflow(
            run_id, start_step=start_step, application_version=app_version
        )
        cur.execute(q("run_moved"), {"run_id": run_id, "app_version": app_version})
    return {"accepted": True, "runId": run_id, "appVersion": app_version, "fromStep": start_step}
