"""The http executor against a real receiver on 127.0.0.1 and a real database: each task POSTed
once under its idempotency key, recorded in `app.deliveries`, never sent again once a 2xx came
back; what is transient and what fails the run; and the token nowhere but in the header."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from sisu.workflow.steps.errors import DeliveryRejected, TransientStepError
from sisu.workflow.steps.ports import Work
from sisu.workflow.steps.webhook import RESPONSE_ROW_CHARS, HttpExecutor
from tests.support.db import rows
from tests.support.fake_webhook import FakeWebhook, WebhookRequest

TOKEN = "whk-secret-7f3a9c"
RUN = "run-hook-1"
TASKS: tuple[dict[str, Any], ...] = (
    {"taskKey": "t1", "payload": {"n": 1}},
    {"taskKey": "t2", "payload": {"n": 2, "tags": ["a", "b"]}},
    {"taskKey": "t3", "payload": None},
)


def key(task_key: str, run_id: str = RUN) -> str:
    return f"{run_id}:ExecuteST:{task_key}"


def work(tasks: tuple[dict[str, Any], ...] = TASKS, run_id: str = RUN) -> Work:
    return Work(
        run_id=run_id,
        workspace=Path("/nonexistent/workspace"),  # a webhook never touches it
        tasks=tasks,
        test_command=None,
        constraints={},
        logs=Path("/nonexistent/logs"),
    )


def deliveries(url: str) -> dict[str, dict[str, Any]]:
    found = rows(url, "SELECT * FROM app.deliveries ORDER BY idempotency_key")
    return {r["idempotency_key"]: r for r in found}


@pytest.fixture
def hook() -> Iterator[FakeWebhook]:
    with FakeWebhook() as server:
        yield server


@pytest.fixture
def executor(hook: FakeWebhook, db_url: str) -> Iterator[HttpExecutor]:
    ex = HttpExecutor(hook.url, TOKEN, db_url, timeout_seconds=5)
    yield ex
    ex.close()


def test_each_task_is_posted_once_under_its_own_key(
    executor: HttpExecutor, hook: FakeWebhook, db_url: str
) -> None:
    outcome = executor.perform(work())

    assert outcome == {
        "deliveries": [
            {"taskKey": t, "idempotencyKey": key(t), "statusCode": 200, "new": True}
            for t in ("t1", "t2", "t3")
        ]
    }
    assert [r.idempotency_key for r in hook.requests] == [key("t1"), key("t2"), key("t3")]
    for request, task in zip(hook.requests, TASKS, strict=True):
        assert (request.method, request.path) == ("POST", "/hook")
        assert request.body == {
            "runId": RUN,
            "taskKey": task["taskKey"],
            "payload": task["payload"],
        }
        assert request.headers["content-type"] == "application/json"
        assert request.authorization == f"Bearer {TOKEN}"
    recorded = deliveries(db_url)
    assert sorted(recorded) == [key("t1"), key("t2"), key("t3")]
    for task in TASKS:
        row = recorded[key(task["taskKey"])]
        assert (row["run_id"], row["task_key"], row["executor"]) == (RUN, task["taskKey"], "http")
        assert (row["status_code"], row["attempts"], row["url"]) == (200, 1, hook.url)
        assert row["delivered_at"] is not None
        assert json.loads(row["response"]) == {"ok": True, "key": key(task["taskKey"])}


def test_performing_again_sends_nothing(
    executor: HttpExecutor, hook: FakeWebhook, db_url: str
) -> None:
    executor.perform(work())
    before = deliveries(db_url)

    again = executor.perform(work())

    assert hook.total == 3
    assert [d["new"] for d in again["deliveries"]] == [False, False, False]
    assert [d["statusCode"] for d in again["deliveries"]] == [200, 200, 200]
    assert deliveries(db_url) == before  # attempts still 1, nothing touched


def test_a_task_listed_twice_is_posted_once(
    executor: HttpExecutor, hook: FakeWebhook, db_url: str
) -> None:
    outcome = executor.perform(work((TASKS[0], TASKS[0])))
    assert hook.count(key("t1")) == 1
    assert [d["new"] for d in outcome["deliveries"]] == [True, False]


def test_without_a_token_no_authorization_header_is_sent(hook: FakeWebhook, db_url: str) -> None:
    ex = HttpExecutor(hook.url, None, db_url)
    try:
        ex.perform(work(TASKS[:1]))
    finally:
        ex.close()
    assert hook.total == 1
    assert "authorization" not in hook.requests[0].headers


def test_a_503_is_transient_and_the_next_attempt_delivers(
    executor: HttpExecutor, hook: FakeWebhook, db_url: str
) -> None:
    hook.answer(503, body="busy, come back later")

    with pytest.raises(TransientStepError, match="503") as failed:
        executor.perform(work())
    assert "busy, come back later" in str(failed.value)
    # In order: the first task failed, so the others were not sent yet.
    assert [r.idempotency_key for r in hook.requests] == [key("t1")]
    first = deliveries(db_url)[key("t1")]
    assert (first["status_code"], first["attempts"], first["delivered_at"]) == (503, 1, None)

    outcome = executor.perform(work())

    assert [d["new"] for d in outcome["deliveries"]] == [True, True, True]
    assert hook.counts() == {key("t1"): 2, key("t2"): 1, key("t3"): 1}
    recorded = deliveries(db_url)
    assert (recorded[key("t1")]["status_code"], recorded[key("t1")]["attempts"]) == (200, 2)
    assert recorded[key("t1")]["delivered_at"] is not None
    assert recorded[key("t1")]["first_attempt_at"] <= recorded[key("t1")]["last_attempt_at"]
    assert [recorded[key(t)]["attempts"] for t in ("t2", "t3")] == [1, 1]


@pytest.mark.parametrize("status", [408, 429, 500, 502, 504])
def test_statuses_worth_another_attempt_are_transient(
    executor: HttpExecutor, hook: FakeWebhook, db_url: str, status: int
) -> None:
    hook.answer(status)
    with pytest.raises(TransientStepError, match=str(status)):
        executor.perform(work(TASKS[:1]))
    assert deliveries(db_url)[key("t1")]["status_code"] == status


def test_a_422_is_rejected_with_the_receivers_answer(
    executor: HttpExecutor, hook: FakeWebhook, db_url: str
) -> None:
    answer = '{"error": "payload.n must be even"}'
    hook.answer(422, body=answer)

    with pytest.raises(DeliveryRejected) as rejected:
        executor.perform(work())

    assert str(rejected.value).startswith(f"422: {answer}")
    assert rejected.value.next_action == "REPAIR"
    assert hook.total == 1
    row = deliveries(db_url)[key("t1")]
    assert (row["status_code"], row["attempts"], row["delivered_at"]) == (422, 1, None)
    assert row["response"] == answer
    # After a repair (`sisu run retry`), the same key is POSTed again and delivered.
    executor.perform(work())
    assert hook.count(key("t1")) == 2
    assert deliveries(db_url)[key("t1")]["attempts"] == 2


@pytest.mark.parametrize("status", [400, 401, 404, 409])
def test_other_client_errors_are_rejected(
    executor: HttpExecutor, hook: FakeWebhook, status: int
) -> None:
    hook.answer(status, body="no")
    with pytest.raises(DeliveryRejected, match=f"^{status}: no"):
        executor.perform(work(TASKS[:1]))


def test_a_huge_answer_is_recorded_capped(
    executor: HttpExecutor, hook: FakeWebhook, db_url: str
) -> None:
    hook.answer(400, body="x" * 200_000)
    with pytest.raises(DeliveryRejected) as rejected:
        executor.perform(work(TASKS[:1]))
    assert len(str(rejected.value)) < 1000
    assert len(deliveries(db_url)[key("t1")]["response"]) == RESPONSE_ROW_CHARS


def test_a_receiver_that_hangs_times_out_as_transient(hook: FakeWebhook, db_url: str) -> None:
    hook.answer(503)
    held = hook.hang()
    ex = HttpExecutor(hook.url, TOKEN, db_url, timeout_seconds=0.5)
    try:
        with pytest.raises(TransientStepError, match="503"):
            ex.perform(work(TASKS[:1]))
        with pytest.raises(TransientStepError, match="timed out"):
            ex.perform(work(TASKS[:1]))
        assert held.arrived.is_set()
        # The row tells the latest attempt: no answer (not the 503 before it).
        row = deliveries(db_url)[key("t1")]
        assert (row["status_code"], row["response"], row["attempts"]) == (None, None, 2)
        assert row["delivered_at"] is None
        held.release.set()
        ex.perform(work(TASKS[:1]))
    finally:
        ex.close()
    assert hook.count(key("t1")) == 3
    row = deliveries(db_url)[key("t1")]
    assert (row["status_code"], row["attempts"]) == (200, 3)


def test_a_receiver_that_is_down_is_transient(db_url: str) -> None:
    with FakeWebhook() as gone:
        url = gone.url  # a port nothing listens on once it stops
    ex = HttpExecutor(url, TOKEN, db_url, timeout_seconds=2)
    try:
        with pytest.raises(TransientStepError, match="unreachable") as failed:
            ex.perform(work(TASKS[:1]))
    finally:
        ex.close()
    assert TOKEN not in str(failed.value)
    assert deliveries(db_url)[key("t1")]["attempts"] == 1


def test_no_database_connection_is_needed_while_a_request_is_in_flight(
    executor: HttpExecutor, hook: FakeWebhook, db_url: str
) -> None:
    """Every connection of the database is cut while the receiver holds the request (what a
    PostgreSQL restart does): had the executor kept a transaction open across the POST, the
    delivery would be lost; it is recorded."""
    import threading

    held = hook.hang()
    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.update(executor.perform(work(TASKS[:1]))))
    thread.start()
    try:
        assert held.arrived.wait(30)
        with psycopg.connect(db_url, autocommit=True) as conn:
            busy = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND state IS DISTINCT FROM 'idle'"
            ).fetchone()
            assert busy == (0,)
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
    finally:
        held.release.set()
        thread.join(30)
    assert result["deliveries"][0]["statusCode"] == 200
    row = deliveries(db_url)[key("t1")]
    assert (row["status_code"], row["attempts"]) == (200, 1)
    assert row["delivered_at"] is not None


def _echo_authorization(request: WebhookRequest) -> str:
    return json.dumps({"seen": request.authorization, "key": request.idempotency_key})


def test_the_token_is_in_no_row_error_or_outcome(hook: FakeWebhook, db_url: str) -> None:
    """Even a receiver that echoes the Authorization header back, and a URL with a password."""
    hook.answer(200, times=2, body=_echo_authorization)
    hook.answer(403, body=_echo_authorization)
    url = hook.url.replace("http://", "http://hookuser:url-pass-91@")
    ex = HttpExecutor(url, TOKEN, db_url)
    try:
        with pytest.raises(DeliveryRejected) as rejected:
            ex.perform(work())
        hook.answer(503, body=_echo_authorization)
        with pytest.raises(TransientStepError) as transient:
            ex.perform(work())
        outcome = ex.perform(work())
    finally:
        ex.close()

    # The receiver did get the token, as a bearer header (not the URL's basic credentials).
    assert {r.authorization for r in hook.requests} == {f"Bearer {TOKEN}"}
    everything = json.dumps(
        rows(db_url, "SELECT row_to_json(d)::text AS r FROM app.deliveries d"), default=str
    )
    assert key("t1") in everything
    for secret in (TOKEN, "url-pass-91", "hookuser"):
        assert secret not in everything
        assert secret not in str(rejected.value)
        assert secret not in str(transient.value)
        assert secret not in json.dumps(outcome)
    assert "***" in str(rejected.value)  # the echo was there, masked
    assert {r["url"] for r in deliveries(db_url).values()} == {hook.url}
