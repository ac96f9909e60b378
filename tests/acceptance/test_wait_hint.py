"""A wait on a run no live worker can take says so once on stderr, instead of waiting in
silence: `sisu intent run --wait` and `sisu run watch` (in a terminal too), with no worker or
with workers of another app version only; with a worker that serves the run, nothing is said."""

from __future__ import annotations

from pathlib import Path

import pexpect

from tests.support.cli import run_sisu, spawn_sisu
from tests.support.workers import fleet_worker, new_executor_id, wait_worker_ready

TIMED_OUT = 124


def hint(run_id: str, app_version: str = "v1") -> str:
    return f"run {run_id} is queued, and no live worker of app version {app_version} "


def new_intent(env: dict[str, str]) -> str:
    created = run_sisu(["intent", "create", "--goal", "hello", "--json"], env)
    assert created.exit_code == 0, created.stderr
    return str(created.json()["intentId"])


def hints_in(stderr: str, run_id: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(hint(run_id))]


def test_a_wait_with_no_worker_says_so_once_then_times_out(sisu_env: dict[str, str]) -> None:
    run_id = new_intent(sisu_env)
    waited = run_sisu(["intent", "run", run_id, "--wait", "--timeout", "6", "--json"], sisu_env)
    assert waited.exit_code == TIMED_OUT, waited.stderr
    assert waited.json()["error"] == "timed_out"
    # Looked at again every 5 s while queued, and said only once.
    assert len(hints_in(waited.stderr, run_id)) == 1, waited.stderr


def test_run_watch_in_a_terminal_says_so_too(sisu_env: dict[str, str]) -> None:
    run_id = new_intent(sisu_env)
    started = run_sisu(["intent", "run", run_id, "--json"], sisu_env)
    assert started.exit_code == 0, started.stderr
    child = spawn_sisu(["run", "watch", run_id, "--timeout", "3"], sisu_env, timeout=60)
    child.expect_exact(hint(run_id))
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == TIMED_OUT


def test_a_worker_of_another_app_version_does_not_count_and_one_of_its_own_does(
    db_url: str, sisu_env: dict[str, str], tmp_path: Path
) -> None:
    run_id = new_intent(sisu_env)
    other = fleet_worker(db_url, tmp_path, new_executor_id("v2"), app_version="v2")
    try:
        other.start()
        wait_worker_ready(db_url, other)
        waited = run_sisu(["intent", "run", run_id, "--wait", "--timeout", "2"], sisu_env)
    finally:
        other.kill()
    assert waited.exit_code == TIMED_OUT, waited.stderr
    assert len(hints_in(waited.stderr, run_id)) == 1, waited.stderr

    own = fleet_worker(db_url, tmp_path, new_executor_id("v1"), app_version="v1")
    try:
        own.start()
        wait_worker_ready(db_url, own)
        watched = run_sisu(["run", "watch", run_id, "--timeout", "60"], sisu_env)
    finally:
        own.kill()
    assert watched.exit_code == 0, watched.stderr
    assert hints_in(watched.stderr, run_id) == [], watched.stderr
