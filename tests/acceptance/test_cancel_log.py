"""Canceling a run is an operator's decision, not a fault: the worker that was running it logs
no ERROR traceback for it (issue 12, item 8), and the run ends `canceled` in the rows."""

from __future__ import annotations

from pathlib import Path

from tests.support.cli import fast_retry_env, run_sisu
from tests.support.db import rows
from tests.support.polling import poll
from tests.support.runs import (
    ASK_GOAL,
    fast_backend,
    run_row,
    start_intent,
    wait_run_status,
    wait_workflow_status,
)
from tests.support.workers import running_worker, wait_worker_ready

SLOW = {"sleepMs": 3000}


def delivered(url: str, run_id: str) -> bool | None:
    found = rows(url, "SELECT 1 FROM app.mock_receipts WHERE run_id = %s", (run_id,))
    return True if found else None


def test_canceled_runs_leave_no_traceback_in_the_worker_log(db_url: str, tmp_path: Path) -> None:
    env = fast_retry_env(db_url, tmp_path / "home")
    with running_worker(
        db_url, tmp_path, name="cancel", concurrency=4, fast_retries=True, kill=True
    ) as worker:
        wait_worker_ready(db_url, worker)
        with fast_backend(db_url) as backend:
            slow = start_intent(backend, "slow", inputs=SLOW)
            asking = start_intent(backend, ASK_GOAL)
        # One run inside its slow ExecuteST, one waiting durably for a human.
        poll(
            "the slow run to be in ExecuteST",
            lambda: True if run_row(db_url, slow)["last_step"] == "DecideST" else None,
            timeout=30,
        )
        wait_run_status(db_url, asking, "waiting_input", worker=worker)
        for run_id in (slow, asking):
            canceled = run_sisu(["run", "cancel", run_id, "--json"], env)
            assert canceled.exit_code == 0, canceled.stderr
        for run_id in (slow, asking):
            wait_workflow_status(db_url, run_id, "CANCELLED")
        # The slow step ends meanwhile (its delivery shows), and the workflow thread then finds
        # its run cancelled when it records the outcome: that is where DBOS logged the ERROR
        # with a traceback, one database read later. A whole run on this worker after that
        # (enqueue, four steps) gives the thread that moment before the log is read.
        poll("the canceled slow step to deliver", lambda: delivered(db_url, slow), timeout=30)
        with fast_backend(db_url) as backend:
            after = start_intent(backend, "after the cancels")
        wait_run_status(db_url, after, "succeeded", worker=worker)
        assert [run_row(db_url, r)["status"] for r in (slow, asking)] == ["canceled", "canceled"]
        assert worker.alive()
        log = worker.log_path.read_text(errors="replace")
    assert "Traceback" not in log, log
