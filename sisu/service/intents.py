"""Creating intents and starting their (single) run."""

from __future__ import annotations

import uuid

from psycopg.types.json import Jsonb

from sisu import engine
from sisu.contracts.runs import IntentCreate, IntentCreated, RunRequest, RunStarted
from sisu.db.queries import q
from sisu.errors import NotFound
from sisu.service.backend import Backend

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


def start_run(backend: Backend, intent_id: str, request: RunRequest) -> RunStarted:
    """Write the run row and enqueue its workflow in one transaction. An intent has exactly one
    run (runId = workflowId = intentId): a second trigger, even a concurrent one, gets the
    existing run back, because both serialise on the intent's row lock."""
    with backend.transaction() as (conn, cur):
        cur.execute(q("lock_intent"), {"id": intent_id})
        if cur.fetchone() is None:
            raise NotFound(f"intent {intent_id} not found", details={"intentId": intent_id})
        cur.execute(q("get_run"), {"id": intent_id})
        existing = cur.fetchone()
        if existing is not None:
            return RunStarted(
                run_id=intent_id, workflow_id=intent_id, intent_id=intent_id,
                status=existing["status"],
            )  # fmt: skip
        cur.execute(
            q("insert_run"),
            {
                "id": intent_id,
                "trace_id": request.trace_id,
                "lane": "batch",
                "priority": None,
                "queue_name": engine.INTENT_QUEUE,
                "app_version": backend.app_version,
            },
        )
        backend.client.enqueue_in_transaction(
            conn,
            {
                "workflow_name": RUN_WORKFLOW,
                "queue_name": engine.INTENT_QUEUE,
                "workflow_id": intent_id,
                "app_version": backend.app_version,
            },
            intent_id,
            backend.run_policy,
        )
    return RunStarted(run_id=intent_id, workflow_id=intent_id, intent_id=intent_id, status="queued")
