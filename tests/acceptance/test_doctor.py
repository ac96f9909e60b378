"""`sisu doctor`: the ops manual's triage table as checks. Each finding names the symptom, the
check and the fix; exit 1 when anything needs fixing."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sisu.contracts.runs import IntentCreate, RunRequest
from sisu.drills.processes import WorkerProcess
from sisu.service import intents
from sisu.service.backend import Backend
from tests.support.cli import Result, run_sisu, sisu_env_for
from tests.support.db import cloned_database, rows, scalar
from tests.support.polling import poll
from tests.support.runs import wait_run_done
from tests.support.serve import free_port, running_serve
from tests.support.workers import running_worker, wait_worker_ready


def quiet_ports(env: dict[str, str]) -> dict[str, str]:
    """Point the configured ports somewhere nobody listens, so that whatever else runs on this
    machine on 3001/3002 does not become a finding of these tests."""
    return {**env, "PORT": str(free_port()), "ADMIN_PORT": str(free_port())}


def doctor(env: dict[str, str], *args: str) -> Result:
    return run_sisu(["doctor", "--json", *args], env)


def findings(result: Result, name: str) -> list[dict[str, Any]]:
    return [f for f in result.json()["findings"] if f["name"] == name]


def finding(result: Result, name: str) -> dict[str, Any]:
    [found] = findings(result, name)
    return found


def create_run(env: dict[str, str], **version: str) -> str:
    """`sisu intent create` + `sisu intent run` with the app version in the environment."""
    env = {**env, **version}
    created = run_sisu(["intent", "create", "--goal", "stranded?", "--json"], env)
    assert created.exit_code == 0, created.stderr
    intent_id: str = created.json()["intentId"]
    started = run_sisu(["intent", "run", intent_id, "--json"], env)
    assert started.exit_code == 0, started.stderr
    return intent_id


# --- no worker at all --------------------------------------------------------------------------


def test_a_run_on_a_version_nobody_serves_is_named_with_its_fix(
    sisu_env: dict[str, str], db_url: str
) -> None:
    env = quiet_ports(sisu_env)
    run_id = create_run(env, SISU_APP_VERSION="v-other")
    # The CLI stamps the run, and its workflow, with SISU_APP_VERSION.
    assert rows(
        db_url,
        "SELECT r.app_version, w.application_version FROM app.runs r "
        "JOIN dbos.workflow_status w ON w.workflow_uuid = r.id WHERE r.id = %s",
        (run_id,),
    ) == [{"app_version": "v-other", "application_version": "v-other"}]

    result = doctor(env)
    assert result.exit_code == 1, result.stderr
    assert result.json()["ok"] is False
    stranded = finding(result, "stranded_version")
    assert stranded["ok"] is False
    assert stranded["detail"]["appVersion"] == "v-other"
    assert stranded["detail"]["runs"] == 1
    assert stranded["detail"]["exampleRun"] == run_id
    assert "--app-version v-other" in stranded["fix"]
    for f in result.json()["findings"]:
        assert {"name", "ok", "symptom", "check", "fix"} <= set(f), f


def test_dbos_appversion_stamps_runs_too(sisu_env: dict[str, str], db_url: str) -> None:
    env = quiet_ports(sisu_env)
    run_id = create_run(env, DBOS__APPVERSION="v-seed")
    assert rows(db_url, "SELECT app_version FROM app.runs WHERE id = %s", (run_id,)) == [
        {"app_version": "v-seed"}
    ]
    assert finding(doctor(env), "stranded_version")["detail"]["appVersion"] == "v-seed"


def test_no_live_worker_is_a_finding(sisu_env: dict[str, str]) -> None:
    result = doctor(quiet_ports(sisu_env))
    assert result.exit_code == 1
    workers = finding(result, "workers")
    assert workers["ok"] is False
    assert workers["detail"] == []
    assert workers["fix"]


def test_an_api_shim_that_does_not_answer_is_a_finding(sisu_env: dict[str, str]) -> None:
    result = doctor(quiet_ports(sisu_env), "--api", "http://127.0.0.1:1")
    assert result.exit_code == 1
    shim = finding(result, "api_shim")
    assert shim["ok"] is False
    assert shim["fix"]


def test_an_unreachable_database_is_a_finding_not_a_traceback(tmp_path: Path) -> None:
    env = quiet_ports(sisu_env_for("postgresql://postgres@127.0.0.1:1/sisu", tmp_path / "home"))
    result = doctor(env)
    assert result.exit_code == 1
    assert "Traceback" not in result.stderr + result.stdout
    database = finding(result, "database")
    assert database["ok"] is False
    assert database["fix"]
    # Nothing that needs the database is claimed either way.
    assert findings(result, "workers") == []


# --- who holds the ports ------------------------------------------------------------------------


def admin_port_of(url: str, worker: WorkerProcess) -> int:
    return int(scalar(url, "SELECT admin_port FROM app.workers WHERE pid = %s", (worker.pid,)))


def test_a_worker_of_another_database_on_the_port_is_named_never_killed(
    sisu_env: dict[str, str], pg_admin_url: str, template_db: str, tmp_path: Path
) -> None:
    """Another deployment (its own database) runs a healthy worker on the admin port this
    deployment is configured with: doctor cannot tie it to its rows, so it is not stale."""
    with (
        cloned_database(pg_admin_url, template_db, "sisu_other") as other_url,
        running_worker(other_url, tmp_path, name="other", fast_retries=True, kill=True) as other,
    ):
        wait_worker_ready(other_url, other)
        port = admin_port_of(other_url, other)
        result = doctor({**sisu_env, "PORT": str(free_port()), "ADMIN_PORT": str(port)})
    [held] = findings(result, "port")
    assert held["ok"] is True, held
    assert held["detail"] == {"port": port, "pid": other.pid, "sisu": True, "executorId": None}
    assert "kill" not in held["fix"]
    assert "--admin-port" in held["fix"]


def test_a_worker_of_this_database_that_stopped_heartbeating_is_stale(
    sisu_env: dict[str, str], db_url: str, tmp_path: Path
) -> None:
    with running_worker(db_url, tmp_path, name="own", fast_retries=True, kill=True) as worker:
        wait_worker_ready(db_url, worker)
        env = {
            **sisu_env,
            "PORT": str(free_port()),
            "ADMIN_PORT": str(admin_port_of(db_url, worker)),
        }
        [live] = findings(doctor(env), "port")
        assert live["ok"] is True, live
        assert live["fix"] is None
        assert live["detail"]["executorId"] == worker.executor_id
        # Wedged: the process keeps its port but heartbeats no more. A doctor that counts a
        # worker dead after half a second of silence then finds it stale.
        os.kill(worker.pid, signal.SIGSTOP)
        try:
            strict = {**env, "SISU_WORKER_DEAD_AFTER_SECONDS": "0.5"}

            def stale() -> dict[str, Any] | None:
                [held] = findings(doctor(strict), "port")
                return None if held["ok"] else held

            held = poll("doctor to find the wedged worker stale", stale, timeout=30)
        finally:
            os.kill(worker.pid, signal.SIGCONT)
    assert held["fix"] == f"kill {worker.pid}"
    assert held["detail"] == {
        "port": int(env["ADMIN_PORT"]),
        "pid": worker.pid,
        "sisu": True,
        "executorId": worker.executor_id,
    }


# --- a live v1 worker ---------------------------------------------------------------------------


@dataclass
class Live:
    env: dict[str, str]
    url: str
    worker: WorkerProcess
    succeeded: str


@pytest.fixture(scope="module")
def live(
    module_db_url: str,
    module_sisu_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Live]:
    backend = Backend(module_db_url, app_version="v1")
    try:
        with running_worker(module_db_url, tmp_path_factory.mktemp("doctor")) as worker:
            intent = intents.create_intent(backend, IntentCreate(goal="doctor", inputs={}))
            intents.start_run(backend, intent.intent_id, RunRequest())
            wait_run_done(module_db_url, intent.intent_id, worker=worker)
            yield Live(quiet_ports(module_sisu_env), module_db_url, worker, intent.intent_id)
    finally:
        backend.close()


def test_a_live_worker_is_listed_with_its_version(live: Live) -> None:
    result = doctor(live.env)
    workers = finding(result, "workers")
    assert workers["ok"] is True, workers
    assert {"executorId": live.worker.executor_id, "appVersion": "v1"} in workers["detail"]
    assert live.worker.executor_id in workers["symptom"]
    assert finding(result, "database")["ok"] is True


def test_a_healthy_deployment_exits_0(live: Live) -> None:
    with running_serve(live.env, Path(live.worker.log_path).parent / "serve.log") as serve:
        serve.wait_responding()
        result = doctor(live.env, "--api", serve.base_url)
    assert result.exit_code == 0, result.stdout
    assert result.json()["ok"] is True
    assert finding(result, "api_shim")["ok"] is True
    assert findings(result, "stranded_version") == []


def test_run_explains_a_succeeded_run(live: Live) -> None:
    result = doctor(live.env, "--run", live.succeeded)
    run = finding(result, "run")
    assert run["detail"]["status"] == "succeeded"
    assert run["detail"]["nextAction"] is None


def test_run_names_an_unknown_run(live: Live) -> None:
    result = doctor(live.env, "--run", "no-such-run")
    assert result.exit_code == 1
    assert finding(result, "run")["ok"] is False


def test_a_version_stranded_next_to_a_live_worker_is_named(live: Live) -> None:
    run_id = create_run(live.env, SISU_APP_VERSION="v-other")
    try:
        result = doctor(live.env)
        assert result.exit_code == 1
        assert finding(result, "workers")["ok"] is True
        # v1 is served; only v-other is stranded.
        stranded = finding(result, "stranded_version")
        assert stranded["detail"]["appVersion"] == "v-other"
        assert stranded["detail"]["exampleRun"] == run_id
        assert "--app-version v-other" in stranded["fix"]
    finally:
        canceled = run_sisu(["run", "cancel", run_id], live.env)
        assert canceled.exit_code == 0, canceled.stderr


# --- a run its live worker lost ----------------------------------------------------------------


def test_a_stalled_run_is_named_and_its_fix_finishes_it(
    sisu_env: dict[str, str], db_url: str, tmp_path: Path
) -> None:
    """A run PENDING on a live worker whose heartbeat says it runs no thread of it (what a
    database outage leaves when the worker cannot resume): doctor names it, and the command it
    prints finishes the run."""
    env = quiet_ports(sisu_env)
    run_id = create_run(env)
    for statement in (
        "UPDATE dbos.workflow_status SET status = 'PENDING', executor_id = 'lost-1', "
        "updated_at = (extract(epoch FROM now() - interval '5 minutes') * 1000)::bigint "
        "WHERE workflow_uuid = %(id)s",
        "UPDATE app.runs SET status = 'running', updated_at = now() - interval '5 minutes' "
        "WHERE id = %(id)s",
        "INSERT INTO app.workers (executor_id, app_version, pid, host) "
        "VALUES ('lost-1', 'v1', 1, 'elsewhere')",
    ):
        rows(db_url, statement + " RETURNING 1", {"id": run_id})

    result = doctor(env)
    assert result.exit_code == 1, result.stderr
    stalled = finding(result, "stalled_runs")
    assert stalled["ok"] is False
    assert stalled["detail"] == [
        {
            "runId": run_id,
            "executorId": "lost-1",
            "idleSeconds": stalled["detail"][0]["idleSeconds"],
        }
    ]
    fix = stalled["fix"].split("   ")[0].split()
    assert fix == ["sisu", "run", "resume", run_id, "--app-version", "v1"]

    with running_worker(db_url, tmp_path) as worker:
        resumed = run_sisu(fix[1:], env)
        assert resumed.exit_code == 0, resumed.stderr
        wait_run_done(db_url, run_id, worker=worker)
    assert findings(doctor(env), "stalled_runs") == []
