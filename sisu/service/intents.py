"""Creating intents and starting their (single) run."""

from __future__ import annotations

import uuid
from typing import Any

from psycopg.types.json import Jsonb

from sisu.contracts.runs import IntentCreate, IntentCreated, RunRequest, RunStarted
from sisu.db.queries import q
from sisu.errors import DuplicateRun, NotFound
from sisu.service import policy
from sisu.service.backend import Backend, Cursor

RUN_WORKFLOW = "RunIntentWF"  # sisu.workflow.wf.intent.NAME, by name: callers never import wf


def create_intent(backend: Backend, request: IntentCreate) -> IntentCreated:
    intent_id = str(uuid.uuid4())
    with backend.transaction() as (_, cur):
        cur.execute(
            q("insert_intent"),
            {
                "id": intent_id,
                "goal": request.goal,
                "inputs": Jsonb(request.inputs),
                "constraints": Jsonb(request.constraints),
                "connectors": Jsonb(request.connectors),
            },
        )
    return IntentCreated(intent_id=intent_id)


def _started(run_id: str, status: str) -> RunStarted:
    return RunStarted.model_validate(
        {"run_id": run_id, "workflow_id": run_id, "intent_id": run_id, "status": status}
    )


def _dedupe_holder(cur: Cursor, queue_name: str, dedupe_id: str) -> dict[str, Any] | None:
    return cur.execute(
        q("dedupe_holder"), {"queue_name": queue_name, "deduplication_id": dedupe_id}
    ).fetchone()


def _duplicate(request: RunRequest, holder: dict[str, Any]) -> RunStarted:
    """A trigger whose deduplication id is held by a live run: join it or be refused."""
    if request.dedupe_policy == "join":
        return _started(holder["run_id"], holder["status"])
    raise DuplicateRun(
        f"deduplication id {request.deduplication_id!r} is held by run {holder['run_id']} "
        f"({holder['status']}); pass dedupePolicy 'join' to attach to it",
        details={"existingRunId": holder["run_id"], "deduplicationId": request.deduplication_id},
    )


def start_run(backend: Backend, intent_id: str, request: RunRequest) -> RunStarted:
    """Write the run row and enqueue its workflow in one transaction. An intent has exactly one
    run (runId = workflowId = intentId): a second trigger, even a concurrent one, gets the
    existing run back, because both serialise on the intent's row lock. Policy is checked
    first, so a rejected trigger writes nothing."""
    from dbos._error import DBOSQueueDeduplicatedError

    placement = policy.check(request, backend.queue_policy)
    try:
        with backend.transaction() as (conn, cur):
            if cur.execute(q("lock_intent"), {"id": intent_id}).fetchone() is None:
                raise NotFound(f"intent {intent_id} not found", details={"intentId": intent_id})
            existing = cur.execute(q("get_run"), {"id": intent_id}).fetchone()
            if existing is not None:
                return _started(intent_id, existing["status"])
            if request.deduplication_id:
                holder = _dedupe_holder(cur, placement.queue_name, request.deduplication_id)
                if holder is not None:
                    return _duplicate(request, holder)
            cur.execute(
                q("insert_run"),
                {
                    "id": intent_id,
                    "trace_id": request.trace_id,
                    "lane": placement.lane,
                    "priority": placement.priority,
                    "queue_name": placement.queue_name,
                    "app_version": backend.app_version,
                },
            )
            options: dict[str, Any] = {
                "workflow_name": RUN_WORKFLOW,
                "queue_name": placement.queue_name,
                "workflow_id": intent_id,
                "app_version": backend.app_version,
                "priority": placement.priority,
            }
            if request.deduplication_id:
                options["deduplication_id"] = request.deduplication_id
            if request.queue_partition_key:
                options["queue_partition_key"] = request.queue_partition_key
            backend.client.enqueue_in_transaction(
                conn,
                options,  # type: ignore[arg-type]
                intent_id,
                backend.run_policy,
            )
    except DBOSQueueDeduplicatedError:
        # A concurrent trigger took the deduplication id between our check and our insert;
        # this transaction rolled back, so nothing of this trigger was written.
        assert request.deduplication_id is not None
        with backend.read() as cur:
            holder = _dedupe_holder(cur, placement.queue_name, request.deduplication_id)
        if holder is None:  # it finished meanwhile: the id is free again, try once more
            return start_run(backend, intent_id, request)
        return _duplicate(request, holder)
    return _started(intent_id, "queued")
