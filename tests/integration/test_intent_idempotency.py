"""Idempotent intent creation through the service layer, on a real PostgreSQL: one key and one
request make one intent however often (and however concurrently) they are sent; the same key with
another request is refused and writes nothing; a bad key writes nothing."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from sisu.contracts.runs import IntentCreate, IntentCreated
from sisu.db.queries import q
from sisu.errors import IdempotencyConflict, ValidationFailed
from sisu.service import intents
from sisu.service.backend import Backend
from tests.support.db import rows, scalar
from tests.support.polling import poll


def intent_rows(url: str) -> list[dict[str, Any]]:
    return rows(
        url,
        "SELECT id, goal, inputs, idempotency_key, request_hash FROM app.intents ORDER BY id",
    )


def test_the_same_key_and_body_give_the_same_intent_and_one_row(
    backend: Backend, db_url: str
) -> None:
    request = IntentCreate(goal="idem", inputs={"tasks": 2, "a": [1, 2]})
    first, first_replayed = intents.create_intent_once(backend, request, idempotency_key="k-1")
    # The same request spelled differently (key order, defaults written out) is the same body.
    again = IntentCreate.model_validate(
        {"inputs": {"a": [1, 2], "tasks": 2}, "constraints": {}, "goal": "idem"}
    )
    second, second_replayed = intents.create_intent_once(backend, again, idempotency_key="k-1")
    assert (first_replayed, second_replayed) == (False, True)
    assert second == first
    assert intents.create_intent(backend, request, idempotency_key="k-1") == first
    stored = intent_rows(db_url)
    assert [(r["id"], r["idempotency_key"]) for r in stored] == [(first.intent_id, "k-1")]
    assert stored[0]["request_hash"] == intents.request_hash(request)


def test_the_same_key_with_another_body_is_a_conflict_and_writes_nothing(
    backend: Backend, db_url: str
) -> None:
    created = intents.create_intent(
        backend, IntentCreate(goal="idem", inputs={"n": 1}), idempotency_key="k-2"
    )
    before = intent_rows(db_url)
    for other in (IntentCreate(goal="idem", inputs={"n": 2}), IntentCreate(goal="other")):
        with pytest.raises(IdempotencyConflict) as caught:
            intents.create_intent(backend, other, idempotency_key="k-2")
        assert caught.value.envelope()["error"] == "idempotency_conflict"
        assert caught.value.http_status == 409
        assert caught.value.details == {"idempotencyKey": "k-2", "intentId": created.intent_id}
    assert intent_rows(db_url) == before


def test_different_keys_and_no_key_create_different_intents(backend: Backend, db_url: str) -> None:
    request = IntentCreate(goal="idem")
    ids = {
        intents.create_intent(backend, request, idempotency_key="k-a").intent_id,
        intents.create_intent(backend, request, idempotency_key="k-b").intent_id,
        intents.create_intent(backend, request).intent_id,
        intents.create_intent(backend, request).intent_id,
    }
    assert len(ids) == 4
    assert scalar(db_url, "SELECT count(*) FROM app.intents") == 4


@pytest.mark.parametrize(
    "key",
    ["", " ", "has space", "x" * 256, "caf\u00e9", "nul\x00", "line\nbreak", "tab\t"],
    ids=["empty", "blank", "space", "too-long", "non-ascii", "nul", "newline", "tab"],
)
def test_a_bad_key_is_a_validation_error_and_writes_nothing(
    backend: Backend, db_url: str, key: str
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        intents.create_intent(backend, IntentCreate(goal="idem"), idempotency_key=key)
    assert caught.value.details[0]["field"] == "Idempotency-Key"
    assert scalar(db_url, "SELECT count(*) FROM app.intents") == 0


def test_the_longest_key_is_accepted(backend: Backend, db_url: str) -> None:
    key = "~" + "x" * 253 + "!"
    created = intents.create_intent(backend, IntentCreate(goal="idem"), idempotency_key=key)
    assert rows(db_url, "SELECT id, idempotency_key FROM app.intents") == [
        {"id": created.intent_id, "idempotency_key": key}
    ]


def _lock_waiters(url: str) -> int | None:
    n = scalar(
        url,
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'",
    )
    return n or None


def test_a_request_racing_an_uncommitted_insert_of_its_key_converges_on_that_row(
    backend: Backend, db_url: str
) -> None:
    """The interleaving a check-then-insert gets wrong, forced: the first request's insert is
    written but not committed when the second one looks. The second must wait for it and then
    answer with its intent, not fail on the unique index nor create another row."""
    request = IntentCreate(goal="race")
    held_id = "held-0000"
    results: list[tuple[IntentCreated, bool]] = []
    errors: list[BaseException] = []

    def second() -> None:
        try:
            results.append(intents.create_intent_once(backend, request, idempotency_key="k-r"))
        except BaseException as exc:
            errors.append(exc)

    with psycopg.connect(db_url) as first:
        inserted = first.execute(
            q("insert_intent_idempotent"),
            {
                "id": held_id,
                "goal": request.goal,
                "inputs": Jsonb({}),
                "constraints": Jsonb({}),
                "connectors": Jsonb([]),
                "repo": None,
                "ref": None,
                "commit_sha": None,
                "idempotency_key": "k-r",
                "request_hash": intents.request_hash(request),
            },
        ).fetchone()
        assert inserted == (held_id,)
        thread = threading.Thread(target=second)
        thread.start()
        poll("the second request to wait on the key", lambda: _lock_waiters(db_url), timeout=30)
        first.commit()
    thread.join(30)
    assert not thread.is_alive()
    assert errors == []
    assert results == [(IntentCreated(intent_id=held_id), True)]
    assert [r["id"] for r in intent_rows(db_url)] == [held_id]


def test_concurrent_requests_with_one_key_make_one_intent(backend: Backend, db_url: str) -> None:
    """Two threads send each of several keys at the same moment: one row per key, and both
    threads get its id."""
    keys = [f"k-c{n}" for n in range(8)]
    request = IntentCreate(goal="concurrent")
    barrier = threading.Barrier(2)

    def client(_: int) -> list[str]:
        got = []
        for key in keys:
            barrier.wait(10)
            got.append(intents.create_intent(backend, request, idempotency_key=key).intent_id)
        return got

    with ThreadPoolExecutor(2) as pool:
        a, b = pool.map(client, range(2))
    assert a == b
    stored = intent_rows(db_url)
    assert sorted(r["idempotency_key"] for r in stored) == sorted(keys)
    assert {r["id"] for r in stored} == set(a)
