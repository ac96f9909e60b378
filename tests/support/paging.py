"""Runs written straight into `app.*` for the paged lists' tests: many runs in milliseconds, with
timestamps chosen so that several runs share one (the cursor's tie-break on the id is then
exercised), and the orders each list must show, read back from the database itself."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from tests.support.db import rows

# Five runs to a timestamp: ties on the sort key are the normal case, not an accident.
PER_TICK = 5


def seed_runs(
    url: str,
    count: int,
    *,
    status: str = "succeeded",
    start: datetime | None = None,
    tick: timedelta = timedelta(seconds=1),
) -> list[str]:
    """`count` runs in `status`, created (and, for a waiting run, waiting since) in groups of
    PER_TICK sharing a timestamp, from `start` (default: an hour ago) onwards. A waiting run
    gets its question card, as AwaitInputST writes it. Returns the ids."""
    start = start or datetime.now(UTC) - timedelta(hours=1)
    ids = [str(uuid.uuid4()) for _ in range(count)]
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        for i, run_id in enumerate(ids):
            at = start + (i // PER_TICK) * tick
            cur.execute(
                "INSERT INTO app.intents (id, goal, created_at) VALUES (%s, 'seeded', %s)",
                (run_id, at),
            )
            cur.execute(
                "INSERT INTO app.runs (id, status, next_action, queue_name, app_version,"
                " created_at, updated_at) VALUES (%s, %s, %s, 'sisu_intents', 'v1', %s, %s)",
                (run_id, status, "INPUT" if status == "waiting_input" else None, at, at),
            )
            if status == "waiting_input":
                cur.execute(
                    "INSERT INTO app.artifacts (run_id, step_id, idx, kind, inline, sha256)"
                    " VALUES (%s, 'DecideST', 0, 'question_card', %s, 'seeded')",
                    (run_id, json.dumps(question_card(at))),
                )
    return ids


def question_card(asked_at: datetime) -> dict[str, Any]:
    return {
        "question": "Which answer?",
        "schema": {"type": "object"},
        "timeoutSeconds": 86400,
        "askedAt": asked_at.isoformat(),
    }


def run_list_order(url: str, status: str | None = None) -> list[str]:
    """Every run id as `run list` must show them: newest first, ties by id, read with a plain
    ORDER BY (the oracle the pages are checked against)."""
    found = rows(
        url,
        "SELECT id FROM app.runs WHERE %(status)s::text IS NULL OR status = %(status)s "
        "ORDER BY created_at DESC, id DESC",
        {"status": status},
    )
    return [r["id"] for r in found]


def inbox_order(url: str) -> list[str]:
    """Every waiting run id as `run inbox` must show them: longest waiting first, ties by id."""
    found = rows(
        url,
        "SELECT id FROM app.runs WHERE status = 'waiting_input' ORDER BY updated_at, id",
    )
    return [r["id"] for r in found]
