"""`sisu workers list` (issue 8), as an operator uses it: every worker sharing the database
with its identity, heartbeat, alive or dead, and runs in flight — read by the real CLI against
real worker processes."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from sisu.worker.admin import PORT_SEARCH_SPAN
from tests.support.cli import SISU, run_sisu
from tests.support.db import rows, scalar
from tests.support.polling import poll
from tests.support.runs import pending_by_executor, submit, wait_run_done, workflows
from tests.support.workers import fleet_worker, new_executor_id, wait_worker_ready

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
            wait_worker_ready(db_url, w)
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
        wait_worker_ready(db_url, w)
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


# The seed's port variables too: these workers are started as an operator types `sisu worker`.
PORT_VARIABLES = ("ADMIN_PORT", "SISU_ADMIN_PORT", "PORT", "SISU_PORT")


@contextmanager
def plain_workers(
    env: dict[str, str], tmp_path: Path, count: int, *args: str
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """`count` processes of `sisu worker ARGS`, with no port flag and no port variable set."""
    env = {k: v for k, v in env.items() if k not in PORT_VARIABLES}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i in range(count):
            with (tmp_path / f"worker-{i}.log").open("ab") as log:
                cmd = [SISU, "worker", *args]
                procs.append(
                    subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
                )
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def ready_row(url: str, proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    """The heartbeat row of this process (by pid), once its admin /healthz says ok."""

    def probe() -> dict[str, Any] | None:
        assert proc.poll() is None, f"worker pid {proc.pid} exited {proc.returncode}"
        found = rows(url, "SELECT * FROM app.workers WHERE pid = %s", (proc.pid,))
        if not found:
            return None
        try:
            body = httpx.get(f"http://127.0.0.1:{found[0]['admin_port']}/healthz", timeout=1)
        except httpx.TransportError:
            return None
        if body.status_code != 200 or body.json()["executorId"] != found[0]["executor_id"]:
            return None
        return found[0]

    return poll(f"worker pid {proc.pid} to be ready", probe, timeout=60, interval=0.1)


def test_two_workers_without_port_flags_both_run(
    db_url: str, sisu_env: dict[str, str], tmp_path: Path
) -> None:
    """Neither --admin-port nor ADMIN_PORT: each worker takes the first free admin port from
    3002 up, is known by it (HOST-PORT, stable across its restarts), and both execute runs."""
    with plain_workers(sisu_env, tmp_path, 2, "--concurrency", "1") as procs:
        first, second = (ready_row(db_url, p) for p in procs)
        ports = {first["admin_port"], second["admin_port"]}
        assert len(ports) == 2
        for row in (first, second):
            assert 3002 <= row["admin_port"] < 3002 + PORT_SEARCH_SPAN
            assert row["executor_id"] == f"{socket.gethostname()}-{row['admin_port']}"
            assert row["stopped_at"] is None
        executors = {first["executor_id"], second["executor_id"]}
        fleet = listed(sisu_env)
        assert {e: (fleet[e]["alive"], fleet[e]["adminPort"]) for e in executors} == {
            r["executor_id"]: (True, r["admin_port"]) for r in (first, second)
        }

        # One run slot each and runs long enough that one worker cannot take both in turn.
        ids = submit(db_url, 2, {"sleepMs": 4000})
        held = poll("each worker to hold one run", lambda: (
            h if sorted(map(len, (h := pending_by_executor(db_url, ids)).values())) == [1, 1]
            else None), timeout=30)  # fmt: skip
        assert set(held) == executors
        for rid in ids:
            wait_run_done(db_url, rid, timeout=60)
        assert {w["executor_id"] for w in workflows(db_url, ids).values()} == executors
        assert scalar(
            db_url, "SELECT count(*) FROM app.runs WHERE id = ANY(%s) AND status = 'succeeded'",
            (ids,),
        ) == 2  # fmt: skip
        assert all(p.poll() is None for p in procs)


def held_port() -> tuple[socket.socket, int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    return sock, int(sock.getsockname()[1])


def test_a_busy_explicit_admin_port_still_fails(
    db_url: str, sisu_env: dict[str, str], tmp_path: Path
) -> None:
    """--admin-port N and ADMIN_PORT=N name the one port to use: taken, the worker exits 1
    (port_in_use) and writes no heartbeat row, instead of moving to another port."""
    sock, port = held_port()
    try:
        env = {k: v for k, v in sisu_env.items() if k not in PORT_VARIABLES}
        by_flag = run_sisu(["worker", "--admin-port", str(port), "--log-format", "json"], env)
        by_env = run_sisu(["worker", "--log-format", "json"], {**env, "ADMIN_PORT": str(port)})
    finally:
        sock.close()
    for result in (by_flag, by_env):
        assert result.exit_code == 1, (result.stdout, result.stderr)
        # With JSON logs the command's error is a record carrying its error code.
        assert json.loads(result.stderr.splitlines()[-1])["code"] == "port_in_use"
    assert scalar(db_url, "SELECT count(*) FROM app.workers") == 0
