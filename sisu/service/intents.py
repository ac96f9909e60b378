"""Creating intents and starting their (single) run."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from typing import Any

from psycopg.types.json import Jsonb

from sisu import names, tracing
from sisu.contracts.runs import IntentCreate, IntentCreated, RunRequest, RunStarted
from sisu.db.queries import q
from sisu.errors import DuplicateRun, IdempotencyConflict, NotFound, ValidationFailed
from sisu.service import policy
from sisu.service.backend import Backend, Cursor
from sisu.workspace import repos

RUN_WORKFLOW = names.RUN_INTENT_WF  # by name: callers never import wf
# What of the intent its run's workflow is started with (the columns its steps read).
RUN_INTENT_FIELDS = ("goal", "inputs", "constraints", "connectors", "repo", "commit_sha")


IDEMPOTENCY_KEY_MAX = 255
# Visible ASCII only (no spaces, no control characters): UUIDs, ULIDs, base64 and
# "order-123:attempt" all fit, and the key reads the same in a header, a shell and a log.
IDEMPOTENCY_KEY_PATTERN = rf"^[\x21-\x7e]{{1,{IDEMPOTENCY_KEY_MAX}}}$"
_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)


def check_idempotency_key(key: str) -> str:
    """The key as given, or a validation_error (before anything is written)."""
    if not _KEY.fullmatch(key):
        raise ValidationFailed(
            f"Idempotency-Key must be 1-{IDEMPOTENCY_KEY_MAX} visible ASCII characters "
            "(no spaces or control characters)",
            details=[{"field": "Idempotency-Key", "type": "idempotency_key", "length": len(key)}],
        )
    return key


def request_hash(request: IntentCreate) -> str:
    """sha256 of the canonical request: the validated contract with its defaults filled in,
    keys sorted, so `{"goal": "g"}` and `{"inputs": {}, "goal": "g"}` are the same request."""
    canonical = json.dumps(
        request.model_dump(mode="json", by_alias=True), sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def create_intent(
    backend: Backend, request: IntentCreate, *, idempotency_key: str | None = None
) -> IntentCreated:
    return create_intent_once(backend, request, idempotency_key=idempotency_key)[0]


def create_intent_once(
    backend: Backend, request: IntentCreate, *, idempotency_key: str | None = None
) -> tuple[IntentCreated, bool]:
    """Create an intent; with an idempotency key, at most one per key. Returns the intent and
    whether it is a replay (the key was already used with this same request). The same key with
    a different request is an idempotency_conflict. Two concurrent requests with one key meet on
    the unique index: the second waits for the first to commit and then replays it."""
    if idempotency_key is not None:
        check_idempotency_key(idempotency_key)
    if "env" in request.constraints:
        from sisu.sandbox import validate_env

        try:
            validate_env(request.constraints["env"])
        except ValueError as exc:
            raise ValidationFailed(
                f"constraints.{exc}", details=[{"field": "constraints.env", "type": "env"}]
            ) from exc
    # Before any transaction: git runs here, and a repo that is not one writes nothing.
    pinned = repos.pin(request.repo, request.ref) if request.repo is not None else None
    intent_id = str(uuid.uuid4())
    params = {
        "id": intent_id,
        "goal": request.goal,
        "inputs": Jsonb(request.inputs),
        "constraints": Jsonb(request.constraints),
        "connectors": Jsonb(request.connectors),
        "repo": pinned.repo if pinned else None,
        "ref": pinned.ref if pinned else None,
        "commit_sha": pinned.commit if pinned else None,
    }
    if idempotency_key is None:
        with backend.autocommit() as cur:  # one INSERT: atomic without a transaction around it
            cur.execute(q("insert_intent"), params)
        return IntentCreated(intent_id=intent_id), False
    digest = request_hash(request)
    with backend.transaction() as (_, cur):
        inserted = cur.execute(
            q("insert_intent_idempotent"),
            {**params, "idempotency_key": idempotency_key, "request_hash": digest},
        ).fetchone()
        if inserted is not None:
            return IntentCreated(intent_id=intent_id), False
        # READ COMMITTED: this statement sees the row whose commit the insert waited for.
        existing = cur.execute(
            q("intent_by_idempotency_key"), {"idempotency_key": idempotency_key}
        ).fetchone()
    assert existing is not None, "ON CONFLICT found a row that is not there"
    if existing["request_hash"] != digest:
        raise IdempotencyConflict(
            f"Idempotency-Key {idempotency_key!r} was already used for intent {existing['id']} "
            "with a different request; use a new key for a new intent",
            details={"idempotencyKey": idempotency_key, "intentId": existing["id"]},
        )
    return IntentCreated(intent_id=existing["id"]), True


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
    from sisu.compat import DBOSQueueDeduplicatedError

    placement = policy.check(request, backend.queue_policy)
    try:
        with backend.transaction() as (conn, cur):
            intent = cur.execute(q("lock_intent"), {"id": intent_id}).fetchone()
            if intent is None:
                raise NotFound(f"intent {intent_id} not found", details={"intentId": intent_id})
            existing = cur.execute(q("get_run"), {"id": intent_id}).fetchone()
            if existing is not None:
                return _started(intent_id, existing["status"])
            # Raised inside the transaction, which then writes nothing.
            policy.check_budgets(intent["constraints"] or {}, backend.queue_policy)
            policy.check_command_timeout(intent["constraints"] or {}, backend.queue_policy)
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
                # The run's trace context: every execution of it (a recovery, a retry) is
                # traced in the one trace (sisu.tracing).
                "attributes": tracing.run_attributes(intent_id),
            }
            if request.deduplication_id:
                options["deduplication_id"] = request.deduplication_id
            if request.queue_partition_key:
                options["queue_partition_key"] = request.queue_partition_key
            # The intent travels with the workflow (intents never change): its steps then plan
            # and deliver without reading it again, a query and a round trip each.
            backend.client.enqueue_in_transaction(
                conn,
                options,  # type: ignore[arg-type]
                intent_id,
                backend.run_policy,
                {key: intent[key] for key in RUN_INTENT_FIELDS},
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
