"""Canceling a run is an operator's decision, not a fault: the worker that was running it logs
no ERROR traceback for it (issue 12, item 8), and the run ends `canceled` in the rows."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import rows, run_sisu
from tests.operator_support import (
    ASK_GOAL,
    fast_backend,
    run_row,
    sisu_env,
    start_intent,
    wait_dbos_status,
    wait_worker_ready,
    worker_running,
)
from tests.runloop_support import poll, wait_run_status

SLOW = {"sleepMs": 3000}


def delivered(url: str, run_id: str) -> bool | None:
    found = rows(url, "SELECT 1 FROM app.mock_receipts WHERE run_id = %s", (run_id,))
    return True if found else None


def test_canceled_runs_leave_no_traceback_in_the_worker_log(db_url: str, tmp_path: Path) -> None:
    env = sisu_env(db_url, tmp_path / "home")
    with worker_running(db_url, tmp_path, name="cancel", concurrency=4) as worker:
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
            wait_dbos_status(db_url, run_id, "CANCELLED")
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
