"""A step that failed before its worker was killed -9 keeps exactly the attempt rows of what
happened: recovery replays the recorded failure (DBOS re-raises the recorded error) without
writing another failed attempt, so attempts stay 1..k with one succeeded attempt at the end,
and a step out of attempts has exactly `maxAttempts` failed ones."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sisu.drills.processes import WorkerProcess
from tests.support.cli import run_sisu, sisu_env_for
from tests.support.db import rows
from tests.support.polling import poll
from tests.support.runs import STEP_IDS, start_intent, wait_run_done, wait_run_status, workflow_row
from tests.support.workers import new_worker, wait_worker_ready


@contextmanager
def backend(url: str, *, max_attempts: int, backoff: float) -> Iterator[Any]:
    from sisu.service.backend import Backend

    b = Backend(
        url, app_version="v1", run_policy={"maxAttempts": max_attempts, "backoffSeconds": backoff}
    )
    try:
        yield b
    finally:
        b.close()


def attempts(url: str, run_id: str, step_id: str = "ExecuteST") -> list[tuple[int, str]]:
    found = rows(
        url,
        "SELECT attempt, phase FROM app.run_steps WHERE run_id = %s AND step_id = %s "
        "ORDER BY attempt",
        (run_id, step_id),
    )
    return [(r["attempt"], r["phase"]) for r in found]


def wait_failed_attempts(url: str, run_id: str, n: int, worker: WorkerProcess) -> None:
    def probe() -> bool | None:
        if not worker.alive():
            raise AssertionError(f"worker died:\n{worker.log_tail()}")
        failed = [a for a, phase in attempts(url, run_id) if phase == "failed"]
        return True if len(failed) >= n else None

    poll(f"{n} failed ExecuteST attempt(s) of {run_id}", probe, timeout=60)


def executions_entered(markers: Path, run_id: str) -> int:
    return len(list(markers.glob(f"{run_id}.*.execute")))


def assert_exact_attempts(url: str, run_id: str, *, failed: int, succeeded: bool) -> None:
    """ExecuteST's rows are attempts 1..k: `failed` failed ones, then (if it succeeded) one
    succeeded; every other step succeeded once, at attempt 1."""
    want = [(i, "failed") for i in range(1, failed + 1)]
    if succeeded:
        want.append((failed + 1, "succeeded"))
    dump = rows(
        url,
        "SELECT step_id, attempt, phase, error->>'message' AS error, started_at, finished_at "
        "FROM app.run_steps WHERE run_id = %s ORDER BY started_at",
        (run_id,),
    )
    assert attempts(url, run_id) == want, "\n".join(map(str, dump))
    for step in STEP_IDS[:-1]:
        assert attempts(url, run_id, step) == [(1, "succeeded")], step


def assert_audit_ok(url: str, run_id: str, tmp_path: Path) -> None:
    audit = run_sisu(["audit", "--json", "--run", run_id], sisu_env_for(url, tmp_path / "cli"))
    assert audit.exit_code == 0, audit.stdout
    assert audit.json()["ok"] is True, audit.stdout


def test_killed_in_the_backoff_after_a_failed_attempt_the_run_keeps_one_failed_row(
    db_url: str, tmp_path: Path
) -> None:
    worker = new_worker(db_url, tmp_path, name="recover-backoff", fast_retries=True)
    worker.start()
    try:
        wait_worker_ready(db_url, worker)
        # The first attempt fails; the retry waits 3 s, long enough to be killed in.
        with backend(db_url, max_attempts=3, backoff=3.0) as b:
            run_id = start_intent(
                b, "fail once", inputs={"faults": {"ExecuteST": {"kind": "net_timeout"}}}
            )
        wait_failed_attempts(db_url, run_id, 1, worker)
        worker.kill()
        # The kill landed in the backoff: the failure is recorded, the retry has not run.
        assert attempts(db_url, run_id) == [(1, "failed")]
        wf = workflow_row(db_url, run_id)
        assert wf is not None and wf["status"] == "PENDING"

        worker = worker.restart()
        wait_run_done(db_url, run_id, worker=worker, timeout=90)
    finally:
        worker.kill()
    assert_exact_attempts(db_url, run_id, failed=1, succeeded=True)
    assert_audit_ok(db_url, run_id, tmp_path)


def test_killed_inside_the_retry_the_run_keeps_one_failed_row(db_url: str, tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    worker = new_worker(db_url, tmp_path, name="recover-retry", fast_retries=True)
    worker.extra_env["SISU_DRILL_MARKER_DIR"] = str(markers)
    worker.start()
    try:
        wait_worker_ready(db_url, worker)
        # Every ExecuteST attempt holds its transaction open 3 s; the first one then fails.
        with backend(db_url, max_attempts=3, backoff=0.05) as b:
            run_id = start_intent(
                b,
                "fail once, then be slow",
                inputs={"sleepMs": 3000, "faults": {"ExecuteST": {"times": 1}}},
            )
        poll(
            "the retry of ExecuteST to start",
            lambda: True if executions_entered(markers, run_id) >= 2 else None,
            timeout=60,
        )
        worker.kill()
        # The kill landed inside the retry: its transaction never committed.
        assert attempts(db_url, run_id) == [(1, "failed")]

        worker = worker.restart()
        wait_run_done(db_url, run_id, worker=worker, timeout=90)
    finally:
        worker.kill()
    assert_exact_attempts(db_url, run_id, failed=1, succeeded=True)
    assert_audit_ok(db_url, run_id, tmp_path)


def test_a_step_out_of_attempts_across_a_kill_has_exactly_max_attempts_failed_rows(
    db_url: str, tmp_path: Path
) -> None:
    worker = new_worker(db_url, tmp_path, name="recover-exceeded", fast_retries=True)
    worker.start()
    try:
        wait_worker_ready(db_url, worker)
        # More faults than attempts; killed in the backoff after the second failed attempt, so
        # recovery replays two recorded failures.
        with backend(db_url, max_attempts=3, backoff=1.5) as b:
            run_id = start_intent(b, "always fail", inputs={"faults": {"ExecuteST": {"times": 10}}})
        wait_failed_attempts(db_url, run_id, 2, worker)
        worker.kill()
        assert attempts(db_url, run_id) == [(1, "failed"), (2, "failed")]

        worker = worker.restart()
        wait_run_status(db_url, run_id, "retries_exceeded", worker=worker, timeout=90)
    finally:
        worker.kill()
    assert_exact_attempts(db_url, run_id, failed=3, succeeded=False)
    run = rows(db_url, "SELECT status, next_action FROM app.runs WHERE id = %s", (run_id,))
    assert run == [{"status": "retries_exceeded", "next_action": "REPAIR"}]
    assert_audit_ok(db_url, run_id, tmp_path)
