"""A run waiting for a human survives its worker being killed -9: a worker started again with the
same executor id recovers it, it still waits, and the answer — sent with `sisu run event` —
completes it exactly once."""

from __future__ import annotations

from pathlib import Path

from tests.support.cli import fast_retry_env, run_sisu
from tests.support.db import scalar
from tests.support.polling import poll
from tests.support.runs import (
    ANSWER,
    ASK_GOAL,
    STEP_IDS,
    fast_backend,
    human_event_count,
    run_row,
    start_intent,
    step_attempts,
    wait_run_done,
    wait_run_status,
    workflow_row,
)
from tests.support.workers import new_worker, wait_worker_ready


def recovery_attempts(url: str, run_id: str) -> int:
    return int(
        scalar(
            url,
            "SELECT recovery_attempts FROM dbos.workflow_status WHERE workflow_uuid = %s",
            (run_id,),
        )
    )


def test_a_waiting_run_survives_kill_9_and_the_answer_completes_it_once(
    db_url: str, tmp_path: Path
) -> None:
    first = new_worker(db_url, tmp_path, name="hitl-kill", fast_retries=True)
    second = new_worker(
        db_url, tmp_path, name="hitl-kill", executor_id=first.executor_id, fast_retries=True
    )
    try:
        first.start()
        with fast_backend(db_url) as b:
            run_id = start_intent(b, ASK_GOAL)
        wait_run_status(db_url, run_id, "waiting_input", worker=first, timeout=30)
        wf = workflow_row(db_url, run_id)
        assert wf is not None
        assert (wf["status"], wf["executor_id"]) == ("PENDING", first.executor_id)
        attempts_before = recovery_attempts(db_url, run_id)

        first.kill()
        assert run_row(db_url, run_id)["status"] == "waiting_input"

        second.start()
        wait_worker_ready(db_url, second)
        # The new process took the workflow over (DBOS recovery of its executor's work) ...
        poll(
            "the waiting workflow to be recovered",
            lambda: True if recovery_attempts(db_url, run_id) > attempts_before else None,
            timeout=20,
        )
        # ... and, replaying from its checkpoints, it waits for the human again.
        assert run_row(db_url, run_id)["status"] == "waiting_input"
        assert run_row(db_url, run_id)["next_action"] == "INPUT"
        assert [s for s, _, _ in step_attempts(db_url, run_id)] == ["CompileST", "ApplyPatchST"]
        cards = scalar(
            db_url,
            "SELECT count(*) FROM app.artifacts WHERE run_id = %s AND kind = 'question_card'",
            (run_id,),
        )
        assert cards == 1
        assert human_event_count(db_url, run_id) == 0

        env = fast_retry_env(db_url, tmp_path / "home")
        sent = run_sisu(
            ["run", "event", run_id, "--type", "input", "--payload", '{"answer": "42"}', "--json"],
            env,
        )
        assert sent.exit_code == 0, (sent.stdout, sent.stderr)
        assert sent.json()["accepted"] is True
        wait_run_done(db_url, run_id, worker=second, timeout=30)
    finally:
        first.kill()
        second.kill()

    assert human_event_count(db_url, run_id) == 1
    decide = scalar(
        db_url,
        "SELECT output->'answer' FROM app.run_steps WHERE run_id = %s AND step_id = 'DecideST'",
        (run_id,),
    )
    assert decide == ANSWER
    assert step_attempts(db_url, run_id) == [(step, 1, "succeeded") for step in STEP_IDS]
    assert (
        scalar(db_url, "SELECT max(seen_count) FROM app.mock_receipts WHERE run_id = %s", (run_id,))
        == 1
    )
