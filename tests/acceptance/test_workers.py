"""`sisu workers list` (issue 8), as an operator uses it: every worker sharing the database
with its identity, heartbeat, alive or dead, and runs in flight — read by the real CLI against
real worker processes."""

from __future__ import annotations

import socket
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.helpers import run_sisu
from tests.runloop_support import poll
from tests.scaleout_support import (
    fleet_worker,
    new_executor_id,
    pending_by_executor,
    submit,
    wait_ready,
)

WORKER_KEYS = [
    "executorId",
    "host",
    "pid",
    "appVersion",
    "adminPort",
    "concurrency",
    "startedAt",
    "heartbeatAt",
    "stoppedAt",
    "alive",
    "inFlight",
]


def listed(env: dict[str, str]) -> dict[str, dict[str, Any]]:
    result = run_sisu(["workers", "list", "--json"], env)
    assert result.exit_code == 0, result.stdout + result.stderr
    body = result.json()
    assert isinstance(body, list)
    for w in body:
        assert list(w) == WORKER_KEYS, w
    return {w["executorId"]: w for w in body}


def test_an_empty_fleet_is_an_empty_list(sisu_env: dict[str, str]) -> None:
    assert listed(sisu_env) == {}


def test_two_workers_are_listed_alive_with_their_runs_in_flight_then_one_stops(
    db_url: str, sisu_env: dict[str, str], tmp_path: Path
) -> None:
    pair = [fleet_worker(db_url, tmp_path, new_executor_id(n), concurrency=1) for n in "ab"]
    try:
        for w in pair:
            w.start()
        for w in pair:
            wait_ready(db_url, w)
        # Long enough to outlast a `sisu workers list` started on a loaded CI machine.
        ids = submit(db_url, 2, {"sleepMs": 6000})
        # One slot each: each worker holds exactly one of the two runs.
        held = poll("each worker to hold one run", lambda: (
            h if sorted(map(len, (h := pending_by_executor(db_url, ids)).values())) == [1, 1]
            else None), timeout=15)  # fmt: skip
        assert set(held) == {w.executor_id for w in pair}

        fleet = listed(sisu_env)
        assert set(fleet) == {w.executor_id for w in pair}
        for w in pair:
            entry = fleet[w.executor_id]
            assert entry["alive"] is True
            assert entry["inFlight"] == 1
            assert entry["pid"] == w.pid
            assert entry["host"] == socket.gethostname()
            assert entry["appVersion"] == "v1"
            assert entry["concurrency"] == 1
            assert entry["adminPort"] > 0
            assert entry["stoppedAt"] is None
            started = datetime.fromisoformat(entry["startedAt"])
            assert datetime.fromisoformat(entry["heartbeatAt"]) >= started

        stopping, staying = pair
        assert stopping.stop(timeout=20) == 0, stopping.log_tail()
        fleet = listed(sisu_env)
        gone = fleet[stopping.executor_id]
        assert gone["alive"] is False
        assert gone["stoppedAt"] is not None
        assert gone["inFlight"] == 0  # its run finished within the grace period
        assert fleet[staying.executor_id]["alive"] is True
        # Alive ones first.
        assert next(iter(fleet)) == staying.executor_id
    finally:
        for w in pair:
            w.kill()


def test_a_killed_worker_is_listed_dead_with_its_run_still_in_flight(
    db_url: str, sisu_env: dict[str, str], tmp_path: Path
) -> None:
    """kill -9: no goodbye, so `stoppedAt` stays null; the worker counts as dead once its
    heartbeat is older than SISU_WORKER_DEAD_AFTER_SECONDS (shortened here from 10 s)."""
    env = {**sisu_env, "SISU_WORKER_DEAD_AFTER_SECONDS": "4"}
    w = fleet_worker(db_url, tmp_path, new_executor_id("k"))
    try:
        w.start()
        wait_ready(db_url, w)
        [rid] = submit(db_url, 1, {"sleepMs": 30000})
        poll("the run to be taken", lambda: pending_by_executor(db_url, [rid]) or None,
             timeout=15)  # fmt: skip
        before = listed(env)[w.executor_id]
        assert (before["alive"], before["inFlight"]) == (True, 1)
        w.kill()
        after = poll("the killed worker to be listed dead", lambda: (
            e if not (e := listed(env)[w.executor_id])["alive"] else None), timeout=15)  # fmt: skip
    finally:
        w.kill()
    assert after["stoppedAt"] is None
    assert after["inFlight"] == 1
    assert after["pid"] == before["pid"]
