"""A database crash never strands a run: the embedded PostgreSQL's postmaster is SIGKILLed while
runs are inside ExecuteST and kept down long enough for DBOS's own bookkeeping to fail outside
sisu's steps (which ends the workflows' threads while their status stays PENDING). The worker is
never restarted; once the database is back it must resume its own runs, each effect once."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sisu.db import embedded
from sisu.drills.processes import WorkerProcess
from tests.support.cli import run_sisu, sisu_env_for
from tests.support.db import rows, throwaway_home
from tests.support.polling import poll
from tests.support.runs import in_execute, submit, wait_all_done
from tests.support.workers import wait_worker_ready

# Each run holds ExecuteST this long; the database stays down past the end of every step.
SLEEP_MS = 3000
DOWN_SECONDS = 4.0


@pytest.fixture
def home() -> Iterator[Path]:
    with throwaway_home("pk-") as path:
        yield path


def _db_up(env: dict[str, str]) -> bool | None:
    # Right after the kill the old postmaster may linger a moment; `sisu db up` is retried.
    return True if run_sisu(["db", "up"], env).exit_code == 0 else None


def test_runs_in_flight_survive_a_postmaster_kill_without_a_worker_restart(home: Path) -> None:
    env = sisu_env_for(None, home)
    assert run_sisu(["db", "up"], env).exit_code == 0
    url = embedded.start(home).url()
    worker = WorkerProcess(
        url=url,
        executor_id=f"pk-{uuid.uuid4().hex[:8]}",
        app_version="v1",
        log_path=home / "worker.log",
        extra_env={"SISU_HOME": str(home)},
        clean_env=True,
    ).start()
    try:
        wait_worker_ready(url, worker)
        ids = submit(url, 4, {"sleepMs": SLEEP_MS})
        poll("every run inside ExecuteST", lambda: in_execute(url, ids) == set(ids) or None,
             timeout=60)  # fmt: skip
        server = embedded.running_server(home)
        assert server is not None
        os.kill(server.pid, signal.SIGKILL)
        time.sleep(DOWN_SECONDS)  # the outage itself, not a wait for a result
        poll("the database to come back", lambda: _db_up(env), timeout=60, interval=0.5)

        wait_all_done(url, ids, timeout=90, watch=(worker,))

        assert worker.alive(), "the worker was restarted or died"
        assert rows(url, "SELECT DISTINCT status FROM app.runs WHERE id = ANY(%s)", (ids,)) == [
            {"status": "succeeded"}
        ]
        assert rows(url, "SELECT receipt_key FROM app.mock_receipts WHERE seen_count > 1") == []
        audit = run_sisu(["audit", "--json"], env)
        assert audit.exit_code == 0, audit.stdout
        assert audit.json()["ok"] is True
    finally:
        worker.stop()


def test_the_postgres_kill_drill_ends_with_every_run_succeeded(home: Path) -> None:
    env = sisu_env_for(None, home)
    result = run_sisu(
        ["chaos", "--fault", "postgres-kill", "--iterations", "2", "--json"], env, timeout=300
    )
    assert result.exit_code == 0, f"{result.stdout}\n{result.stderr}"
    out = result.json()
    assert out["skipped"] is None
    assert out["kills"] == 2
    assert [k["fault"] for k in out["killLog"]] == ["postgres-kill", "postgres-kill"]
    assert out["runs"] > 0
    assert out["succeeded"] == out["runs"]
    assert out["duplicates"] == 0
    assert out["auditOk"] is True
    url = embedded.start(home).url()
    assert rows(url, "SELECT DISTINCT status FROM app.runs") == [{"status": "succeeded"}]
