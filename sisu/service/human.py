"""Human-in-the-loop: answers to runs waiting for input, and the inbox of such runs."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

from psycopg.types.json import Jsonb

from sisu import names
from sisu.contracts.runs import EventAccepted, EventRequest, InboxItem, InboxPage
from sisu.db.queries import q
from sisu.errors import InvalidState, NotFound, ValidationFailed
from sisu.service import paging, schema
from sisu.service.backend import Backend

INPUT_TOPIC = names.INPUT_TOPIC


def _dedupe_key(run_id: str, event: EventRequest) -> str:
    """The event's idempotency key: the caller's, or one derived from its content, so a client
    retrying the same POST is recognised."""
    if event.idempotency_key:
        return f"{run_id}:{event.idempotency_key}"
    digest = hashlib.sha256(
        json.dumps({"type": event.type, "payload": event.payload}, sort_keys=True).encode()
    ).hexdigest()
    return f"{run_id}:{event.type}:{digest}"


def send_event(backend: Backend, run_id: str, event: EventRequest) -> EventAccepted:
    """Store the event once and send it to the waiting workflow, in one transaction."""
    key = _dedupe_key(run_id, event)
    with backend.transaction() as (conn, cur):
        run = cur.execute(q("lock_run"), {"id": run_id}).fetchone()
        if run is None:
            raise NotFound(f"run {run_id} not found", details={"runId": run_id})
        if cur.execute(q("human_event_by_key"), {"dedupe_key": key}).fetchone():
            return EventAccepted(accepted=True, duplicate=True)
        if run["status"] != "waiting_input":
            raise InvalidState(
                f"run {run_id} is {run['status']}, not waiting_input: it takes no event now",
                details={"runId": run_id, "status": run["status"], "expected": "waiting_input"},
            )
        card = cur.execute(q("question_card"), {"run_id": run_id}).fetchone()
        expected = (card["inline"].get("eventType") if card else None) or "input"
        if event.type != expected:
            raise ValidationFailed(
                f"run {run_id} waits for an {expected} event, not {event.type}"
                + (
                    " (sisu run event ID --approve, or --reject --reason R)"
                    if expected == "approval"
                    else ""
                ),
                details=[{"field": "type", "expected": expected, "input": event.type}],
            )
        answer_schema = card["inline"]["schema"] if card else {"type": "object"}
        mismatches = schema.errors(event.payload, answer_schema)
        if mismatches:
            first = mismatches[0]
            raise ValidationFailed(
                f"{first['field']}: {first['message']} (see the question card's schema)",
                details=mismatches,
            )
        cur.execute(
            q("insert_human_event"),
            {"run_id": run_id, "type": event.type, "payload": Jsonb(event.payload), "key": key},
        )
        backend.client.send_in_transaction(
            conn,
            run_id,
            {"type": event.type, "payload": event.payload, "key": key},
            topic=INPUT_TOPIC,
            idempotency_key=key,
        )
        cur.execute(q("run_input_received"), {"run_id": run_id})
    return EventAccepted(accepted=True)


def inbox(
    backend: Backend, *, limit: int = paging.DEFAULT_LIMIT, after: str | None = None
) -> InboxPage:
    """A page of the runs waiting for a human, longest waiting first, after the cursor `after`
    (the `next` of the previous page; None for the first page)."""
    paging.check_limit(limit)
    params = {**paging.start("inbox", after), "limit": limit + 1}
    with backend.read() as cur:
        rows = cur.execute(q("inbox"), params).fetchall()
    page, more = paging.split(rows, limit)
    now = datetime.now(UTC)
    items = []
    for r in page:
        card = r["card"]
        asked_at = datetime.fromisoformat(card["askedAt"])
        age = (now - asked_at).total_seconds()
        items.append(
            InboxItem(
                run_id=r["id"],
                question=card["question"],
                answer_schema=card["schema"],
                asked_at=asked_at,
                age_seconds=round(age, 3),
                time_left_seconds=round(max(0.0, float(card["timeoutSeconds"]) - age), 3),
            )
        )
    last = page[-1] if page else None
    return InboxPage(
        items=items,
        next=paging.encode("inbox", paging.Position(last["updated_at"], last["id"]))
        if more and last
        else None,
    )
