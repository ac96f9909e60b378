"""Human-in-the-loop (Walkthrough D) as an operator meets it: a run whose goal asks waits for
input with a question card, shows up in `sisu run inbox`, refuses answers that do not fit the
question, takes the right one exactly once and finishes with it; a run nobody answers times
out. A real `sisu serve`, a real `sisu worker`, real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sisu.drills.processes import WorkerProcess
from tests.support.cli import fast_retry_env, run_sisu
from tests.support.db import scalar
from tests.support.envelopes import error_of
from tests.support.runs import (
    ANSWER,
    ASK_GOAL,
    STEP_IDS,
    human_event_count,
    run_row,
    step_attempts,
    wait_run_done,
    wait_run_status,
    wait_workflow_status,
)
from tests.support.serve import serve_client
from tests.support.workers import running_worker


@pytest.fixture(scope="module")
def hitl_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hitl")


@pytest.fixture(scope="module")
def hitl_db(module_db_url: str) -> str:
    """This module's own migrated database (conftest's `module_db_url`)."""
    return module_db_url


@pytest.fixture(scope="module")
def hitl_env(hitl_db: str, hitl_tmp: Path) -> dict[str, str]:
    return fast_retry_env(hitl_db, hitl_tmp / "home")


@pytest.fixture(scope="module")
def worker(hitl_db: str, hitl_tmp: Path) -> Iterator[WorkerProcess]:
    with running_worker(hitl_db, hitl_tmp, name="hitl", fast_retries=True, kill=True) as w:
        yield w


@pytest.fixture(scope="module")
def api(hitl_env: dict[str, str], hitl_tmp: Path, worker: WorkerProcess) -> Iterator[httpx.Client]:
    with serve_client(hitl_env, hitl_tmp / "logs" / "serve.log") as client:
        yield client


def start(api: httpx.Client, goal: str, constraints: dict[str, Any] | None = None) -> str:
    r = api.post("/intents", json={"goal": goal, "inputs": {}, "constraints": constraints or {}})
    assert r.status_code == 201, r.text
    run_id = str(r.json()["intentId"])
    r = api.post(f"/intents/{run_id}/run", json={})
    assert r.status_code == 202, r.text
    return run_id


def event(api: httpx.Client, run_id: str, payload: Any) -> httpx.Response:
    return api.post(f"/runs/{run_id}/events", json={"type": "input", "payload": payload})


def view(api: httpx.Client, run_id: str) -> dict[str, Any]:
    r = api.get(f"/runs/{run_id}")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def notifications(url: str, run_id: str) -> int:
    return int(
        scalar(
            url, "SELECT count(*) FROM dbos.notifications WHERE destination_uuid = %s", (run_id,)
        )
    )


def test_an_asking_run_waits_takes_one_answer_and_succeeds_with_it(
    api: httpx.Client, hitl_db: str, hitl_env: dict[str, str], worker: WorkerProcess
) -> None:
    run_id = start(api, ASK_GOAL)
    wait_run_status(hitl_db, run_id, "waiting_input", worker=worker, timeout=30)

    waiting = view(api, run_id)
    assert (waiting["status"], waiting["nextAction"]) == ("waiting_input", "INPUT")
    cards = [a for a in waiting["artifacts"] if a["kind"] == "question_card"]
    assert len(cards) == 1, waiting["artifacts"]
    card = cards[0]["inline"]
    assert card["question"] == ASK_GOAL
    assert card["schema"]["type"] == "object"
    assert "answer" in card["schema"]["required"]
    # It waits before deciding: nothing decided or executed yet.
    assert [s for s, _, _ in step_attempts(hitl_db, run_id)] == ["CompileST", "ApplyPatchST"]

    inbox = run_sisu(["run", "inbox", "--json"], hitl_env)
    assert inbox.exit_code == 0, inbox.stderr
    mine = [i for i in inbox.json()["items"] if i["runId"] == run_id]
    assert len(mine) == 1, inbox.stdout
    assert mine[0]["question"] == ASK_GOAL
    assert mine[0]["answerSchema"] == card["schema"]
    assert mine[0]["ageSeconds"] >= 0
    assert 0 < mine[0]["timeLeftSeconds"] <= 24 * 3600

    # An answer that does not fit the question's schema: 400, nothing stored or sent.
    error_of(event(api, run_id, {"nope": 1}), 400, "validation_error")
    error_of(event(api, run_id, {"answer": 42}), 400, "validation_error")
    assert human_event_count(hitl_db, run_id) == 0
    assert notifications(hitl_db, run_id) == 0
    assert run_row(hitl_db, run_id)["status"] == "waiting_input"

    r = event(api, run_id, ANSWER)
    assert r.status_code == 202, r.text
    assert r.json()["accepted"] is True
    wait_run_done(hitl_db, run_id, worker=worker, timeout=30)

    done = view(api, run_id)
    assert (done["status"], done["nextAction"]) == ("succeeded", None)
    decide = [s for s in done["steps"] if s["stepId"] == "DecideST"]
    assert len(decide) == 1, done["steps"]
    assert decide[0]["output"]["answer"] == ANSWER
    assert [(s, a, p) for s, a, p in step_attempts(hitl_db, run_id)] == [
        (step, 1, "succeeded") for step in STEP_IDS
    ]
    assert human_event_count(hitl_db, run_id) == 1

    # The same delivery again (a client retrying its POST): accepted, not stored twice.
    again = event(api, run_id, ANSWER)
    assert again.status_code == 202, again.text
    assert again.json()["accepted"] is True
    assert human_event_count(hitl_db, run_id) == 1
    assert run_row(hitl_db, run_id)["status"] == "succeeded"
    # The run has left the inbox.
    inbox = run_sisu(["run", "inbox", "--json"], hitl_env)
    assert inbox.exit_code == 0, inbox.stderr
    assert run_id not in {i["runId"] for i in inbox.json()["items"]}


def test_an_event_is_refused_unless_the_run_waits(
    api: httpx.Client, hitl_db: str, worker: WorkerProcess
) -> None:
    run_id = start(api, "no question here")
    wait_run_done(hitl_db, run_id, worker=worker, timeout=30)

    body = error_of(event(api, run_id, ANSWER), 409, "invalid_state")
    assert body["details"]["status"] == "succeeded"
    assert human_event_count(hitl_db, run_id) == 0
    assert notifications(hitl_db, run_id) == 0

    error_of(event(api, "00000000-0000-0000-0000-000000000000", ANSWER), 404, "not_found")
    bad_type = api.post(f"/runs/{run_id}/events", json={"type": "approve", "payload": ANSWER})
    error_of(bad_type, 400, "validation_error")


def test_an_unanswered_question_times_out(
    api: httpx.Client, hitl_db: str, worker: WorkerProcess
) -> None:
    run_id = start(api, ASK_GOAL, {"inputTimeoutSeconds": 1})
    wait_run_status(hitl_db, run_id, "failed", worker=worker, timeout=30)
    row = run_row(hitl_db, run_id)
    assert row["error"]["code"] == "input_timeout", row["error"]
    assert row["next_action"] is None
    wait_workflow_status(hitl_db, run_id, "ERROR")
    assert [s for s, _, _ in step_attempts(hitl_db, run_id)] == ["CompileST", "ApplyPatchST"]

    # Too late now: the run does not wait any more.
    error_of(event(api, run_id, ANSWER), 409, "invalid_state")
    assert human_event_count(hitl_db, run_id) == 0


def test_a_timed_out_question_is_asked_again_on_retry(
    api: httpx.Client, hitl_db: str, worker: WorkerProcess
) -> None:
    run_id = start(api, ASK_GOAL, {"inputTimeoutSeconds": 1})
    wait_run_status(hitl_db, run_id, "failed", worker=worker, timeout=30)

    r = api.post(f"/runs/{run_id}/retry")
    assert r.status_code == 202, r.text
    assert r.json()["runId"] == run_id
    # The same workflow resumes at the wait: the completed steps are not executed again.
    wait_run_status(hitl_db, run_id, "waiting_input", worker=worker, timeout=30)
    assert step_attempts(hitl_db, run_id) == [
        ("CompileST", 1, "succeeded"),
        ("ApplyPatchST", 1, "succeeded"),
    ]
    assert run_row(hitl_db, run_id)["retry_count"] == 1
    r = event(api, run_id, ANSWER)
    assert r.status_code == 202, r.text
    wait_run_done(hitl_db, run_id, worker=worker, timeout=30)
    assert step_attempts(hitl_db, run_id) == [(step, 1, "succeeded") for step in STEP_IDS]


def test_an_approval_gate_takes_approve_and_reject_from_the_cli_and_http(
    api: httpx.Client, hitl_db: str, hitl_env: dict[str, str], worker: WorkerProcess
) -> None:
    gate = {"requireApproval": True}
    approved, rejected, over_http = (start(api, goal, gate) for goal in ("ok", "no", "http"))
    for run_id in (approved, rejected, over_http):
        wait_run_status(hitl_db, run_id, "waiting_input", worker=worker)
    inbox = run_sisu(["run", "inbox", "--json"], hitl_env)
    cards = {item["runId"]: item for item in inbox.json()["items"]}
    # GET /inbox answers the same page.
    over_the_wire = api.get("/inbox")
    assert over_the_wire.status_code == 200, over_the_wire.text
    assert over_the_wire.json()["next"] is None
    wire = {i["runId"]: i["question"] for i in over_the_wire.json()["items"]}
    for run_id in (approved, rejected, over_http):
        assert wire[run_id] == cards[run_id]["question"]
    assert cards[approved]["question"].startswith("Approve this change?")
    assert cards[approved]["answerSchema"]["required"] == ["approved"]
    # An answer where an approval is due, and an approval flag with a payload, change nothing.
    error_of(event(api, approved, {"answer": "yes"}), 400, "validation_error")
    both = run_sisu(["run", "event", approved, "--approve", "--payload", "{}"], hitl_env)
    assert both.exit_code == 2
    assert run_row(hitl_db, approved)["status"] == "waiting_input"
    assert human_event_count(hitl_db, approved) == 0

    assert run_sisu(["run", "event", approved, "--approve"], hitl_env).exit_code == 0
    no = run_sisu(["run", "event", rejected, "--reject", "--reason", "too risky"], hitl_env)
    assert no.exit_code == 0, no.stderr
    r = api.post(
        f"/runs/{over_http}/events",
        json={"type": "approval", "payload": {"approved": False}},
    )
    assert r.status_code == 202, r.text
    wait_run_done(hitl_db, approved, worker=worker)
    for run_id, reason in ((rejected, "too risky"), (over_http, "rejected without a reason")):
        wait_run_status(hitl_db, run_id, "canceled", worker=worker)
        wait_workflow_status(hitl_db, run_id, "SUCCESS")
        row = run_row(hitl_db, run_id)
        assert row["error"] == {"code": "rejected", "message": reason, "step": "DecideST"}
        assert [a[0] for a in step_attempts(hitl_db, run_id)] == ["CompileST", "ApplyPatchST"]
        audit = run_sisu(["audit", "--json", "--run", run_id], hitl_env)
        assert audit.exit_code == 0, audit.stdout
