"""`sisu worker` as a real subprocess: its row in `app.workers`, its heartbeat, its admin
endpoint, its refusal of a shared or default executor id, and a clean SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from sisu.drills.processes import WorkerProcess
from sisu.errors import ValidationFailed
from tests.support.cli import run_sisu
from tests.support.db import rows
from tests.support.polling import poll

T = TypeVar("T")
START_TIMEOUT = 60.0


def wait_until(what: str, probe: Callable[[], T | None], timeout: float = START_TIMEOUT) -> T:
    return poll(what, probe, timeout=timeout)


def worker_row(url: str, executor_id: str) -> dict[str, Any] | None:
    found = rows(url, "SELECT * FROM app.workers WHERE executor_id = %s", (executor_id,))
    return found[0] if found else None


def get(port: int, path: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def make_worker(db_url: str, tmp_path: Path, executor_id: str, **kw: Any) -> WorkerProcess:
    return WorkerProcess(
        url=db_url,
        executor_id=executor_id,
        app_version=kw.pop("app_version", "v1"),
        log_path=tmp_path / f"{executor_id}-{uuid.uuid4().hex[:4]}.log",
        admin_port=0,
        extra_env={
            "SISU_HOME": str(tmp_path / "home"),
            # A fast heartbeat keeps the wait for it short; it is not a timing assertion.
            "SISU_HEARTBEAT_SECONDS": "0.5",
            **kw.pop("extra_env", {}),
        },
        **kw,
    )


def ready(worker: WorkerProcess, db_url: str) -> dict[str, Any]:
    """Wait for the worker's own row, then for its /healthz to answer 200; returns the row."""

    def own_row() -> dict[str, Any] | None:
        if not worker.alive():
            pytest.fail(f"worker exited early:\n{worker.log_tail()}")
        row = worker_row(db_url, worker.executor_id)
        return row if row and row["pid"] == worker.pid else None

    row = wait_until("the worker's row", own_row)
    wait_until(
        "healthz 200",
        lambda: True if get(row["admin_port"], "/healthz")[0] == 200 else None,
    )
    return row


@pytest.fixture
def worker(db_url: str, tmp_path: Path) -> Iterator[WorkerProcess]:
    w = make_worker(db_url, tmp_path, f"t-{uuid.uuid4().hex[:8]}").start()
    try:
        ready(w, db_url)
        yield w
    finally:
        w.stop()


def test_worker_registers_and_heartbeats(worker: WorkerProcess, db_url: str) -> None:
    first = worker_row(db_url, worker.executor_id)
    assert first is not None
    assert first["pid"] == worker.pid
    assert first["stopped_at"] is None
    assert first["app_version"] == "v1"
    assert first["admin_port"] and first["admin_port"] > 0

    def advanced() -> dict[str, Any] | None:
        row = worker_row(db_url, worker.executor_id)
        return row if row and row["heartbeat_at"] > first["heartbeat_at"] else None

    later = wait_until("the heartbeat to advance", advanced, timeout=15)
    assert later["started_at"] == first["started_at"]
    assert worker.alive()


def test_the_heartbeat_names_the_runs_the_worker_runs(worker: WorkerProcess, db_url: str) -> None:
    """`active_workflows` is what the `stalled_runs` oracle trusts: a run inside a slow step is
    listed while it runs and dropped once it finished."""
    from tests.support.runs import submit, wait_all_done

    [run_id] = submit(db_url, 1, {"sleepMs": 2000})

    def listed() -> bool | None:
        row = worker_row(db_url, worker.executor_id)
        return True if row and run_id in row["active_workflows"] else None

    wait_until("the heartbeat to list the run", listed, timeout=30)
    wait_all_done(db_url, [run_id], timeout=60, watch=(worker,))

    def dropped() -> bool | None:
        row = worker_row(db_url, worker.executor_id)
        return True if row and run_id not in row["active_workflows"] else None

    wait_until("the heartbeat to drop the finished run", dropped, timeout=30)


def test_healthz_answers_with_the_workers_identity(worker: WorkerProcess, db_url: str) -> None:
    row = worker_row(db_url, worker.executor_id)
    assert row is not None
    status, body = get(row["admin_port"], "/healthz")
    assert status == 200
    assert body["executorId"] == worker.executor_id
    assert body["appVersion"] == "v1"
    assert isinstance(body["queues"], list) and body["queues"]
    assert body["queues"] == list(row["queues"])
    assert body["pid"] == worker.pid

    status, body = get(row["admin_port"], "/no-such-route")
    assert status == 404
    assert body["error"] == "not_found"


def test_app_version_flag_beats_the_environment(db_url: str, tmp_path: Path) -> None:
    w = make_worker(
        db_url,
        tmp_path,
        f"t-{uuid.uuid4().hex[:8]}",
        app_version="from-flag",
        extra_env={"SISU_APP_VERSION": "from-env", "DBOS__APPVERSION": "from-dbos-env"},
    ).start()
    try:
        row = ready(w, db_url)
        assert row["app_version"] == "from-flag"
        assert get(row["admin_port"], "/healthz")[1]["appVersion"] == "from-flag"
    finally:
        w.stop()


def test_a_second_worker_with_the_same_executor_id_is_refused(
    worker: WorkerProcess, db_url: str, tmp_path: Path
) -> None:
    twin = make_worker(db_url, tmp_path, worker.executor_id).start()
    try:
        assert twin.proc is not None
        code = twin.proc.wait(timeout=START_TIMEOUT)
    finally:
        twin.kill()
    assert code != 0
    assert worker.alive()
    row = worker_row(db_url, worker.executor_id)
    assert row is not None
    assert row["pid"] == worker.pid
    assert row["stopped_at"] is None


def test_executor_id_local_is_refused(sisu_env: dict[str, str], db_url: str) -> None:
    result = run_sisu(
        ["worker", "--executor-id", "local", "--admin-port", "0"], sisu_env, timeout=60
    )
    assert result.exit_code == ValidationFailed.exit_code
    assert rows(db_url, "SELECT * FROM app.workers") == []


def test_sigterm_exits_0_and_records_the_stop(worker: WorkerProcess, db_url: str) -> None:
    assert worker.proc is not None
    os.kill(worker.pid, signal.SIGTERM)
    try:
        code = worker.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("the worker did not exit on SIGTERM")
    assert code == 0
    row = worker_row(db_url, worker.executor_id)
    assert row is not None
    assert row["stopped_at"] is not None
    assert row["stopped_at"] >= row["started_at"]
