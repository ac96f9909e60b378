"""The repair lane and cancel (Walkthrough D) as an operator meets them: a run whose step keeps
timing out ends `retries_exceeded` / REPAIR and is retried — the same workflow resumes at the
failed step, completed steps do not run again, no effect is delivered twice; runs are canceled
one by one and in bulk. A real `sisu serve` over HTTP, the installed `sisu` (in a pty where it
asks for confirmation) and a real `sisu worker`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pexpect
import pytest

from sisu.drills.processes import WorkerProcess
from sisu.workflow.steps.drill_hooks import ENV_MARKER_DIR
from tests.support.cli import fast_retry_env, run_sisu, spawn_sisu
from tests.support.db import rows, scalar
from tests.support.envelopes import cli_ok, error_of
from tests.support.polling import poll
from tests.support.runs import (
    ASK_GOAL,
    fast_backend,
    run_row,
    start_intent,
    step_attempts,
    wait_run_done,
    wait_run_status,
    wait_workflow_status,
    workflow_row,
)
from tests.support.runview import ERROR_KEYS
from tests.support.serve import serve_client
from tests.support.workers import running_worker

FAULTY = {"faults": {"ExecuteST": {"kind": "net_timeout", "times": 3}}}
SLOW = {"sleepMs": 3000}
UNKNOWN = "00000000-0000-0000-0000-000000000000"


@pytest.fixture(scope="module")
def rp_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("repair")


@pytest.fixture(scope="module")
def rp_db(module_db_url: str) -> str:
    """This module's own migrated database (conftest's `module_db_url`)."""
    return module_db_url


@pytest.fixture(scope="module")
def rp_env(rp_db: str, rp_tmp: Path) -> dict[str, str]:
    # SISU_STEP_BACKOFF_SECONDS (fast retries) is in it: the process that starts a run passes
    # the retry policy to the run's workflow.
    return fast_retry_env(rp_db, rp_tmp / "home")


@pytest.fixture(scope="module")
def worker(rp_db: str, rp_tmp: Path) -> Iterator[WorkerProcess]:
    # Several slots: a slow run being canceled must not hold up the others. The markers show
    # when a run's ExecuteST has started.
    with running_worker(
        rp_db,
        rp_tmp,
        name="repair",
        concurrency=4,
        fast_retries=True,
        env={ENV_MARKER_DIR: str(markers(rp_tmp))},
        kill=True,
    ) as w:
        yield w


@pytest.fixture(scope="module")
def api(rp_env: dict[str, str], rp_tmp: Path, worker: WorkerProcess) -> Iterator[httpx.Client]:
    with serve_client(rp_env, rp_tmp / "logs" / "serve.log") as client:
        yield client


def markers(rp_tmp: Path) -> Path:
    """Where the module's worker marks each ExecuteST it enters."""
    path = rp_tmp / "markers"
    path.mkdir(exist_ok=True)
    return path


def start(api: httpx.Client, goal: str = "repair me", inputs: dict[str, Any] | None = None) -> str:
    r = api.post("/intents", json={"goal": goal, "inputs": inputs or {}, "constraints": {}})
    assert r.status_code == 201, r.text
    run_id = str(r.json()["intentId"])
    r = api.post(f"/intents/{run_id}/run", json={})
    assert r.status_code == 202, r.text
    return run_id


def wait_exhausted(url: str, run_id: str, worker: WorkerProcess) -> None:
    wait_run_status(url, run_id, "retries_exceeded", worker=worker, timeout=30)
    wait_workflow_status(url, run_id, "ERROR")


def receipts_seen_more_than_once(url: str) -> list[dict[str, Any]]:
    return rows(url, "SELECT receipt_key, seen_count FROM app.mock_receipts WHERE seen_count > 1")


def assert_repaired(url: str, run_id: str) -> None:
    """After one retry: each earlier step ran once, ExecuteST failed three times then succeeded,
    the same single workflow finished, and nothing was delivered twice."""
    assert step_attempts(url, run_id) == [
        ("CompileST", 1, "succeeded"),
        ("ApplyPatchST", 1, "succeeded"),
        ("DecideST", 1, "succeeded"),
        ("ExecuteST", 1, "failed"),
        ("ExecuteST", 2, "failed"),
        ("ExecuteST", 3, "failed"),
        ("ExecuteST", 4, "succeeded"),
    ]
    row = run_row(url, run_id)
    assert (row["status"], row["next_action"], row["retry_count"]) == ("succeeded", None, 1)
    wf = rows(url, "SELECT status FROM dbos.workflow_status WHERE workflow_uuid = %s", (run_id,))
    assert wf == [{"status": "SUCCESS"}]
    assert scalar(url, "SELECT count(*) FROM app.opencode_calls WHERE run_id = %s", (run_id,)) == 1
    assert receipts_seen_more_than_once(url) == []


# --- the repair lane over HTTP ---------------------------------------------------------------


def test_a_run_out_of_retries_is_repaired_on_the_same_workflow(
    api: httpx.Client, rp_db: str, worker: WorkerProcess
) -> None:
    run_id = start(api, inputs=FAULTY)
    wait_exhausted(rp_db, run_id, worker)
    workflows_before = scalar(rp_db, "SELECT count(*) FROM dbos.workflow_status")

    view = api.get(f"/runs/{run_id}").json()
    assert (view["status"], view["nextAction"], view["retryCount"]) == (
        "retries_exceeded",
        "REPAIR",
        0,
    )
    error = run_row(rp_db, run_id)["error"]
    assert error["code"] == "retries_exceeded", error
    assert error["step"] == "ExecuteST", error
    failed = [(s, a, p) for s, a, p in step_attempts(rp_db, run_id) if s == "ExecuteST"]
    assert failed == [("ExecuteST", n, "failed") for n in (1, 2, 3)]
    assert all(s["error"] for s in view["steps"] if s["stepId"] == "ExecuteST")
    assert scalar(rp_db, "SELECT count(*) FROM app.mock_receipts WHERE run_id = %s", (run_id,)) == 0

    r = api.post(f"/runs/{run_id}/retry")
    assert r.status_code == 202, r.text
    assert r.json() == {"accepted": True, "runId": run_id, "fromStep": "ExecuteST"}
    wait_run_done(rp_db, run_id, worker=worker, timeout=30)
    assert_repaired(rp_db, run_id)
    # A retry is the same workflow, not a new one.
    assert scalar(rp_db, "SELECT count(*) FROM dbos.workflow_status") == workflows_before
    assert api.get(f"/runs/{run_id}").json()["retryCount"] == 1

    # It succeeded: nothing to repair any more.
    body = error_of(api.post(f"/runs/{run_id}/retry"), 409, "invalid_state")
    assert body["details"]["status"] == "succeeded"
    assert run_row(rp_db, run_id)["retry_count"] == 1


def test_retry_is_refused_unless_the_run_needs_repair(
    api: httpx.Client, rp_db: str, worker: WorkerProcess
) -> None:
    run_id = start(api, "fine")
    wait_run_done(rp_db, run_id, worker=worker, timeout=30)
    body = error_of(api.post(f"/runs/{run_id}/retry"), 409, "invalid_state")
    assert body["details"]["status"] == "succeeded"
    row = run_row(rp_db, run_id)
    assert (row["status"], row["retry_count"]) == ("succeeded", 0)
    error_of(api.post(f"/runs/{UNKNOWN}/retry"), 404, "not_found")
    error_of(api.post(f"/runs/{UNKNOWN}/cancel"), 404, "not_found")


# --- cancel over HTTP ------------------------------------------------------------------------


def test_a_slow_run_is_canceled_once(
    api: httpx.Client, rp_db: str, rp_tmp: Path, worker: WorkerProcess
) -> None:
    run_id = start(api, "slow", SLOW)
    # Inside ExecuteST: the three steps before it are done, the slow one has started.
    poll(
        "the slow run to be in ExecuteST",
        lambda: True if list(markers(rp_tmp).glob(f"{run_id}.*.execute")) else None,
        timeout=30,
    )
    r = api.post(f"/runs/{run_id}/cancel")
    assert r.status_code == 202, r.text
    assert r.json() == {"accepted": True, "runId": run_id, "status": "canceled"}
    assert run_row(rp_db, run_id)["status"] == "canceled"
    wait_workflow_status(rp_db, run_id, "CANCELLED")
    delivered = "SELECT count(*) FROM app.mock_receipts WHERE run_id = %s"
    assert scalar(rp_db, delivered, (run_id,)) == 0  # canceled inside its 3 s, before the effect

    body = error_of(api.post(f"/runs/{run_id}/cancel"), 409, "invalid_state")
    assert body["details"]["status"] == "canceled"
    # A canceled run is not repairable either.
    error_of(api.post(f"/runs/{run_id}/retry"), 409, "invalid_state")

    # Cancel is not a rollback: the step already running does its work (its 3 s are up once
    # its delivery shows), then its thread ends. Its transaction finds the workflow no longer
    # its own and rolls back, so the run is not brought back to life and records no success.
    poll(
        "the canceled run's ExecuteST to deliver",
        lambda: True if scalar(rp_db, delivered, (run_id,)) else None,
        timeout=30,
    )
    poll(
        "the worker to stop running the canceled run",
        lambda: True if run_id not in _running_on(rp_db, worker) else None,
        timeout=30,
    )
    assert scalar(rp_db, delivered, (run_id,)) == 1
    assert ("ExecuteST", 1, "succeeded") not in step_attempts(rp_db, run_id)
    row = run_row(rp_db, run_id)
    assert (row["status"], row["next_action"]) == ("canceled", None)
    assert workflow_row(rp_db, run_id)["status"] == "CANCELLED"  # type: ignore[index]
    assert receipts_seen_more_than_once(rp_db) == []


def _running_on(url: str, worker: WorkerProcess) -> list[str]:
    """The workflows the worker's latest heartbeat says a thread of it runs."""
    found = scalar(
        url,
        "SELECT active_workflows FROM app.workers WHERE executor_id = %s",
        (worker.executor_id,),
    )
    return list(found or [])


def test_a_queued_run_is_canceled_before_it_starts(
    api: httpx.Client, rp_db: str, rp_env: dict[str, str]
) -> None:
    """Canceled while still queued (a lane no worker here serves: the partitioned queue)."""
    r = api.post("/intents", json={"goal": "never runs", "inputs": {}, "constraints": {}})
    run_id = r.json()["intentId"]
    r = api.post(f"/intents/{run_id}/run", json={"queuePartitionKey": "tenant-x"})
    assert r.status_code == 202, r.text
    assert workflow_row(rp_db, run_id)["status"] == "ENQUEUED"  # type: ignore[index]

    canceled = cli_ok(run_sisu(["run", "cancel", run_id, "--json"], rp_env))
    assert canceled == {"accepted": True, "runId": run_id, "status": "canceled"}
    assert run_row(rp_db, run_id)["status"] == "canceled"
    assert workflow_row(rp_db, run_id)["status"] == "CANCELLED"  # type: ignore[index]
    again = run_sisu(["run", "cancel", run_id, "--json"], rp_env)
    assert again.exit_code == 5, (again.stdout, again.stderr)
    assert again.json()["error"] == "invalid_state"
    assert step_attempts(rp_db, run_id) == []


# --- the CLI ---------------------------------------------------------------------------------


def test_cli_retry_repairs_one_run(
    rp_db: str, rp_env: dict[str, str], worker: WorkerProcess
) -> None:
    with fast_backend(rp_db) as b:
        run_id = start_intent(b, "cli repair", inputs=FAULTY)
        fine = start_intent(b, "cli fine")
    wait_exhausted(rp_db, run_id, worker)
    wait_run_done(rp_db, fine, worker=worker, timeout=30)

    accepted = cli_ok(run_sisu(["run", "retry", run_id, "--json"], rp_env))
    assert accepted == {"accepted": True, "runId": run_id, "fromStep": "ExecuteST"}
    wait_run_done(rp_db, run_id, worker=worker, timeout=30)
    assert_repaired(rp_db, run_id)

    refused = run_sisu(["run", "retry", fine, "--json"], rp_env)
    assert refused.exit_code == 5, (refused.stdout, refused.stderr)
    body = refused.json()
    assert set(body) == ERROR_KEYS
    assert body["error"] == "invalid_state"
    assert run_row(rp_db, fine)["retry_count"] == 0


def test_cli_bulk_cancel_of_waiting_runs(
    rp_db: str, rp_env: dict[str, str], worker: WorkerProcess
) -> None:
    with fast_backend(rp_db) as b:
        asking = [start_intent(b, ASK_GOAL) for _ in range(2)]
    for run_id in asking:
        wait_run_status(rp_db, run_id, "waiting_input", worker=worker, timeout=30)
    waiting = {
        r["id"] for r in rows(rp_db, "SELECT id FROM app.runs WHERE status = 'waiting_input'")
    }
    assert waiting == set(asking)

    result = cli_ok(
        run_sisu(["run", "cancel", "--status", "waiting_input", "--all", "--yes", "--json"], rp_env)
    )
    assert result["matched"] == 2
    assert {(o["runId"], o["ok"]) for o in result["results"]} == {(i, True) for i in asking}
    for run_id in asking:
        assert run_row(rp_db, run_id)["status"] == "canceled"
        wait_workflow_status(rp_db, run_id, "CANCELLED")
    assert scalar(rp_db, "SELECT count(*) FROM app.runs WHERE status = 'waiting_input'") == 0


def bulk_retry_in_a_terminal(env: dict[str, str], answer: str) -> int:
    child = spawn_sisu(["run", "retry", "--status", "retries_exceeded", "--all"], env, timeout=30)
    child.expect(r"\?")  # the confirmation prompt
    child.sendline(answer)
    child.expect(pexpect.EOF)
    child.close()
    return int(child.exitstatus) if child.exitstatus is not None else -1


def test_cli_bulk_retry_asks_first(
    rp_db: str, rp_env: dict[str, str], worker: WorkerProcess
) -> None:
    with fast_backend(rp_db) as b:
        broken = [start_intent(b, f"bulk repair {i}", inputs=FAULTY) for i in range(2)]
    for run_id in broken:
        wait_exhausted(rp_db, run_id, worker)
    exhausted = {
        r["id"] for r in rows(rp_db, "SELECT id FROM app.runs WHERE status = 'retries_exceeded'")
    }
    assert exhausted == set(broken)

    # "n": nothing is retried.
    assert bulk_retry_in_a_terminal(rp_env, "n") == 1
    for run_id in broken:
        row = run_row(rp_db, run_id)
        assert (row["status"], row["retry_count"]) == ("retries_exceeded", 0)
        assert workflow_row(rp_db, run_id)["status"] == "ERROR"  # type: ignore[index]

    # "y": every one of them is retried, on its own workflow, and succeeds.
    assert bulk_retry_in_a_terminal(rp_env, "y") == 0
    for run_id in broken:
        wait_run_done(rp_db, run_id, worker=worker, timeout=30)
        assert_repaired(rp_db, run_id)


def test_cli_bulk_refuses_an_unknown_status(rp_env: dict[str, str], rp_db: str) -> None:
    result = run_sisu(
        ["run", "cancel", "--status", "cancelled", "--all", "--yes", "--json"], rp_env
    )
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    body = result.json()
    assert set(body) == ERROR_KEYS
    assert body["error"] == "validation_error"
