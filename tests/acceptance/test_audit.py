"""`sisu audit`: the SQL oracles. Two intents run to success once with a real worker; every test
then gets its own copy of that database, breaks one law by hand (the way a bug would) and
expects exactly the oracle for that law to fail, by name, with exit 1."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from sisu.contracts.runs import IntentCreate, RunRequest
from sisu.service import intents
from sisu.service.backend import Backend
from sisu.workflow.steps.ports import Work
from sisu.workflow.steps.webhook import HttpExecutor
from tests.support.cli import Result, run_sisu, sisu_env_for
from tests.support.db import clone_template, cloned_database, drop_database, rows
from tests.support.fake_webhook import FakeWebhook
from tests.support.runs import wait_run_done
from tests.support.workers import running_worker

CHECK_NAMES = [
    "duplicate_effects",
    "step_sequence",
    "status_agreement",
    "compiler_calls",
    "deliveries",
    "stranded_runs",
    "stalled_runs",
    "unread_events",
    "orphan_intents",
]
WARNING_CHECKS = {"orphan_intents"}


@dataclass
class Golden:
    """A database where runs `a` and `b` succeeded with a real worker."""

    name: str
    a: str
    b: str


@pytest.fixture(scope="module")
def golden(
    pg_admin_url: str, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Golden]:
    name, url = clone_template(pg_admin_url, template_db, f"sisu_audit_{uuid.uuid4().hex[:8]}")
    backend = Backend(url, app_version="v1")
    try:
        ids = [
            intents.create_intent(backend, IntentCreate(goal=f"audit {n}", inputs={"tasks": 2}))
            for n in ("a", "b")
        ]
        with running_worker(url, tmp_path_factory.mktemp("audit")) as worker:
            for intent in ids:
                intents.start_run(backend, intent.intent_id, RunRequest(trace_id="audit"))
            for intent in ids:
                wait_run_done(url, intent.intent_id, worker=worker)
    finally:
        backend.close()
    yield Golden(name, ids[0].intent_id, ids[1].intent_id)
    drop_database(pg_admin_url, name)


@dataclass
class Db:
    url: str
    env: dict[str, str]
    a: str
    b: str

    def execute(self, statement: str, params: Any = None) -> int:
        with psycopg.connect(self.url, autocommit=True) as conn:
            return conn.execute(statement, params).rowcount

    def audit(self, *args: str, env: dict[str, str] | None = None) -> Result:
        return run_sisu(["audit", *args], env or self.env)


@pytest.fixture
def db(golden: Golden, pg_admin_url: str, tmp_path: Path) -> Iterator[Db]:
    with cloned_database(pg_admin_url, golden.name, "sisu_audit_t") as url:
        yield Db(url, sisu_env_for(url, tmp_path / "home"), golden.a, golden.b)


def checks(result: Result) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in result.json()["checks"]}


def assert_only_failing(result: Result, name: str, count: int = 1) -> dict[str, Any]:
    """Exit 1, `name` failed with `count` rows, and every other check still passes."""
    assert result.exit_code == 1, f"{result.stdout}\n{result.stderr}"
    body = result.json()
    assert body["ok"] is False
    by_name = checks(result)
    failing = sorted(n for n, c in by_name.items() if not c["ok"])
    assert failing == [name], by_name
    assert by_name[name]["count"] == count, by_name[name]
    assert len(by_name[name]["detail"]) == count
    return by_name[name]


def test_a_clean_database_passes_every_check(db: Db) -> None:
    result = db.audit("--json")
    assert result.exit_code == 0, f"{result.stdout}\n{result.stderr}"
    body = result.json()
    assert body["ok"] is True
    assert [c["name"] for c in body["checks"]] == CHECK_NAMES
    for c in body["checks"]:
        assert {"name", "ok", "count", "detail", "severity"} <= set(c), c
        assert (c["ok"], c["count"], c["detail"]) == (True, 0, []), c
        assert c["severity"] == ("warning" if c["name"] in WARNING_CHECKS else "error"), c
    assert body["warnings"] == 0


def test_a_receipt_seen_twice_fails_duplicate_effects(db: Db) -> None:
    assert (
        db.execute(
            "UPDATE app.mock_receipts SET seen_count = 2 WHERE receipt_key = "
            "(SELECT min(receipt_key) FROM app.mock_receipts WHERE run_id = %s)",
            (db.a,),
        )
        == 1
    )
    failed = assert_only_failing(db.audit("--json"), "duplicate_effects")
    assert failed["detail"][0]["run_id"] == db.a
    assert failed["detail"][0]["seen_count"] == 2


def test_verbose_prints_each_check_sql_ready_for_psql(db: Db) -> None:
    db.execute("UPDATE app.mock_receipts SET seen_count = 2 WHERE run_id = %s", (db.a,))
    human = db.audit("-v")
    assert human.exit_code == 1
    assert "FROM app.mock_receipts" in human.stdout
    # Each check's SQL, as the JSON carries it, is printed verbatim and runs as it stands
    # (parameters filled in), finding what the check counted.
    as_json = db.audit("--json", "-v")
    assert as_json.exit_code == 1
    for check in as_json.json()["checks"]:
        sql = check["sql"]
        assert sql, check
        assert sql in human.stdout, check["name"]
        with psycopg.connect(db.url) as conn:
            found = conn.execute(sql).fetchall()
        assert len(found) == check["count"], check["name"]


def test_run_scopes_the_audit_to_one_run(db: Db) -> None:
    db.execute("UPDATE app.mock_receipts SET seen_count = 2 WHERE run_id = %s", (db.b,))
    clean = db.audit("--run", db.a, "--json")
    assert clean.exit_code == 0, clean.stdout
    assert clean.json()["runId"] == db.a
    assert [c["name"] for c in clean.json()["checks"]] == CHECK_NAMES
    dirty = db.audit("--run", db.b, "--json")
    failed = assert_only_failing(dirty, "duplicate_effects", count=2)
    assert {d["run_id"] for d in failed["detail"]} == {db.b}
    whole = db.audit("--json")
    assert whole.exit_code == 1
    assert checks(whole)["duplicate_effects"]["count"] == 2


def test_a_missing_step_attempt_fails_step_sequence(db: Db) -> None:
    assert (
        db.execute("DELETE FROM app.run_steps WHERE run_id = %s AND step_id = 'DecideST'", (db.a,))
        == 1
    )
    failed = assert_only_failing(db.audit("--json"), "step_sequence")
    assert failed["detail"][0]["run_id"] == db.a
    assert failed["detail"][0]["steps"] == ["CompileST", "ApplyPatchST", "ExecuteST"]


def test_an_app_status_dbos_disagrees_with_fails_status_agreement(db: Db) -> None:
    db.execute("UPDATE app.runs SET status = 'running' WHERE id = %s", (db.a,))
    failed = assert_only_failing(db.audit("--json"), "status_agreement")
    assert failed["detail"][0] == {
        "run_id": db.a,
        "run_status": "running",
        "workflow_status": "SUCCESS",
    }


def _ended_but_pending(db: Db, run_id: str, ended_ago: str) -> None:
    """The run ended `ended_ago`, DBOS still says PENDING, and its executor heartbeats."""
    db.execute(
        "UPDATE app.runs SET updated_at = now() - %s::interval WHERE id = %s", (ended_ago, run_id)
    )
    db.execute(
        "UPDATE dbos.workflow_status SET status = 'PENDING' WHERE workflow_uuid = %s", (run_id,)
    )
    assert (
        db.execute(
            "UPDATE app.workers SET heartbeat_at = now(), stopped_at = NULL WHERE executor_id = "
            "(SELECT executor_id FROM dbos.workflow_status WHERE workflow_uuid = %s)",
            (run_id,),
        )
        == 1
    )


def test_a_run_that_just_ended_may_still_be_pending_in_dbos(db: Db) -> None:
    """The moment between a run's last commit and DBOS's record of the workflow's end."""
    _ended_but_pending(db, db.a, "1 second")
    result = db.audit("--json")
    assert result.exit_code == 0, result.stdout
    assert checks(result)["status_agreement"]["ok"] is True


def test_a_run_ended_long_ago_but_pending_in_dbos_fails_status_agreement(db: Db) -> None:
    _ended_but_pending(db, db.a, "10 minutes")
    failed = assert_only_failing(db.audit("--json"), "status_agreement")
    assert failed["detail"][0] == {
        "run_id": db.a,
        "run_status": "succeeded",
        "workflow_status": "PENDING",
    }


def test_an_unrecorded_compile_fails_compiler_calls(db: Db) -> None:
    assert db.execute("DELETE FROM app.opencode_calls WHERE run_id = %s", (db.a,)) >= 1
    failed = assert_only_failing(db.audit("--json"), "compiler_calls")
    assert failed["detail"][0]["run_id"] == db.a


def test_a_compile_without_response_fails_compiler_calls(db: Db) -> None:
    db.execute("UPDATE app.opencode_calls SET response = NULL WHERE run_id = %s", (db.b,))
    failed = assert_only_failing(db.audit("--json"), "compiler_calls")
    assert failed["detail"][0]["run_id"] == db.b


# --- deliveries: runs the http executor ran -------------------------------------------------


def deliver_over_http(db: Db, run_id: str, tasks: list[dict[str, Any]] | None = None) -> list[str]:
    """Make `run_id` a run whose ExecuteST ran the http executor: its decision's tasks (or
    `tasks`) POSTed for real to a receiver on 127.0.0.1, and the executor's outcome as the
    step's output. Returns the decision's task keys."""
    decided = rows(
        db.url,
        "SELECT output FROM app.run_steps WHERE run_id = %s AND step_id = 'DecideST' "
        "AND phase = 'succeeded'",
        (run_id,),
    )
    decision_tasks = decided[0]["output"]["tasks"]
    assert len(decision_tasks) >= 2
    work = Work(
        run_id=run_id,
        workspace=Path("/nonexistent"),
        tasks=tuple(decision_tasks if tasks is None else tasks),
        test_command=None,
        constraints={},
        logs=Path("/nonexistent"),
    )
    with FakeWebhook() as hook:
        executor = HttpExecutor(hook.url, "audit-token", db.url)
        try:
            outcome = executor.perform(work)
        finally:
            executor.close()
    assert (
        db.execute(
            "UPDATE app.run_steps SET output = %s WHERE run_id = %s AND step_id = 'ExecuteST' "
            "AND phase = 'succeeded'",
            (json.dumps(outcome), run_id),
        )
        == 1
    )
    return [t["taskKey"] for t in decision_tasks]


def test_an_http_run_with_every_task_delivered_passes(db: Db) -> None:
    deliver_over_http(db, db.a)
    result = db.audit("--json")
    assert result.exit_code == 0, result.stdout
    assert checks(result)["deliveries"]["ok"] is True


def test_an_http_run_without_a_delivery_row_fails_deliveries(db: Db) -> None:
    task_keys = deliver_over_http(db, db.a)
    gone = f"{db.a}:ExecuteST:{task_keys[0]}"
    assert db.execute("DELETE FROM app.deliveries WHERE idempotency_key = %s", (gone,)) == 1
    failed = assert_only_failing(db.audit("--json"), "deliveries")
    assert failed["detail"][0] == {"run_id": db.a, "undelivered": [task_keys[0]]}


def test_an_http_run_whose_task_got_no_2xx_fails_deliveries(db: Db) -> None:
    task_keys = deliver_over_http(db, db.b)
    db.execute(
        "UPDATE app.deliveries SET status_code = 422 WHERE idempotency_key = %s",
        (f"{db.b}:ExecuteST:{task_keys[-1]}",),
    )
    failed = assert_only_failing(db.audit("--json"), "deliveries")
    assert failed["detail"][0] == {"run_id": db.b, "undelivered": [task_keys[-1]]}
    # Scoped to the other run, the audit passes.
    assert db.audit("--run", db.a, "--json").exit_code == 0


def test_a_decided_task_the_http_executor_skipped_fails_deliveries(db: Db) -> None:
    decided = rows(
        db.url,
        "SELECT output FROM app.run_steps WHERE run_id = %s AND step_id = 'DecideST'",
        (db.a,),
    )[0]["output"]["tasks"]
    task_keys = deliver_over_http(db, db.a, tasks=decided[:1])
    failed = assert_only_failing(db.audit("--json"), "deliveries")
    assert failed["detail"][0] == {"run_id": db.a, "undelivered": sorted(task_keys[1:])}


def cli_run(db: Db, version: str) -> str:
    env = {**db.env, "SISU_APP_VERSION": version}
    created = run_sisu(["intent", "create", "--goal", f"stranded on {version}", "--json"], env)
    assert created.exit_code == 0, created.stderr
    intent_id: str = created.json()["intentId"]
    started = run_sisu(["intent", "run", intent_id, "--json"], env)
    assert started.exit_code == 0, started.stderr
    return intent_id


def test_a_queued_run_on_a_version_no_worker_serves_fails_stranded_runs(db: Db) -> None:
    # A live (by heartbeat) worker serves v1, so a v1 run waits legitimately; nobody serves
    # v-other.
    db.execute(
        "INSERT INTO app.workers (executor_id, app_version, pid, host) "
        "VALUES ('audit-v1', 'v1', 1, 'elsewhere')"
    )
    backend = Backend(db.url, app_version="v1")
    try:
        served = intents.create_intent(backend, IntentCreate(goal="served")).intent_id
        intents.start_run(backend, served, RunRequest())
    finally:
        backend.close()
    stranded = cli_run(db, "v-other")
    versions = rows(
        db.url, "SELECT id, app_version FROM app.runs WHERE id = ANY(%s)", ([served, stranded],)
    )
    assert {r["id"]: r["app_version"] for r in versions} == {served: "v1", stranded: "v-other"}
    failed = assert_only_failing(db.audit("--json"), "stranded_runs")
    assert failed["detail"][0]["run_id"] == stranded
    assert failed["detail"][0]["app_version"] == "v-other"


def test_a_run_pending_on_a_dead_executor_fails_stranded_runs(db: Db) -> None:
    db.execute(
        "UPDATE dbos.workflow_status SET status = 'PENDING', executor_id = 'gone-1' "
        "WHERE workflow_uuid = %s",
        (db.a,),
    )
    db.execute("UPDATE app.runs SET status = 'running' WHERE id = %s", (db.a,))
    failed = assert_only_failing(db.audit("--json"), "stranded_runs")
    assert failed["detail"][0]["run_id"] == db.a
    assert failed["detail"][0]["executor_id"] == "gone-1"


def lose_run(db: Db, run_id: str, *, active: list[str], status: str = "running") -> None:
    """`run_id` PENDING on live worker `live-1` for five minutes, with `active` the workflows
    its heartbeat says it runs."""
    db.execute(
        "UPDATE dbos.workflow_status SET status = 'PENDING', executor_id = 'live-1', "
        "updated_at = (extract(epoch FROM now() - interval '5 minutes') * 1000)::bigint "
        "WHERE workflow_uuid = %s",
        (run_id,),
    )
    db.execute(
        "UPDATE app.runs SET status = %s, updated_at = now() - interval '5 minutes' WHERE id = %s",
        (status, run_id),
    )
    db.execute(
        "INSERT INTO app.workers (executor_id, app_version, pid, host, active_workflows) "
        "VALUES ('live-1', 'v1', 1, 'elsewhere', %s)",
        (active,),
    )


def test_a_run_its_live_worker_runs_no_thread_of_fails_stalled_runs(db: Db) -> None:
    lose_run(db, db.a, active=[])
    failed = assert_only_failing(db.audit("--json"), "stalled_runs")
    assert failed["detail"][0]["run_id"] == db.a
    assert failed["detail"][0]["executor_id"] == "live-1"
    assert failed["detail"][0]["idle_seconds"] >= 299


def test_stalled_after_sets_how_long_a_lost_run_may_idle(db: Db) -> None:
    lose_run(db, db.a, active=[])
    result = db.audit("--json", "--stalled-after", "600")
    assert result.exit_code == 0, result.stdout
    assert checks(result)["stalled_runs"]["count"] == 0


def test_a_run_its_live_worker_is_running_is_not_stalled(db: Db) -> None:
    # A slow step, or a durable sleep before a retry: the thread is alive.
    lose_run(db, db.a, active=[db.a])
    result = db.audit("--json")
    assert result.exit_code == 0, result.stdout
    assert checks(result)["stalled_runs"]["count"] == 0


def test_a_run_waiting_for_a_human_is_not_stalled(db: Db) -> None:
    lose_run(db, db.a, active=[], status="waiting_input")
    result = db.audit("--json")
    assert checks(result)["stalled_runs"]["count"] == 0


def test_an_answer_to_a_finished_run_fails_unread_events(db: Db) -> None:
    db.execute(
        "INSERT INTO dbos.notifications (destination_uuid, topic, message) "
        "VALUES (%s, 'human_input', '{}')",
        (db.a,),
    )
    failed = assert_only_failing(db.audit("--json"), "unread_events")
    assert failed["detail"][0]["run_id"] == db.a


# --- orphan_intents: a warning, not a failure ------------------------------------------------


def add_intent(db: Db, intent_id: str, age: str) -> None:
    db.execute(
        "INSERT INTO app.intents (id, goal, created_at) "
        "VALUES (%s, 'never run', now() - %s::interval)",
        (intent_id, age),
    )


def test_an_old_intent_without_a_run_is_an_orphan_warning_and_the_audit_passes(db: Db) -> None:
    add_intent(db, "orphan-old", "20 minutes")
    add_intent(db, "orphan-new", "0 seconds")
    result = db.audit("--json")
    assert result.exit_code == 0, f"{result.stdout}\n{result.stderr}"
    body = result.json()
    assert (body["ok"], body["warnings"]) == (True, 1)
    by_name = checks(result)
    assert sorted(n for n, c in by_name.items() if not c["ok"]) == ["orphan_intents"]
    orphans = by_name["orphan_intents"]
    assert (orphans["severity"], orphans["count"]) == ("warning", 1)
    assert [d["intent_id"] for d in orphans["detail"]] == ["orphan-old"]
    # The human report exits 0 too.
    assert db.audit().exit_code == 0


def test_the_orphan_threshold_is_a_parameter(db: Db) -> None:
    add_intent(db, "orphan-old", "20 minutes")
    add_intent(db, "orphan-new", "2 minutes")
    shorter = checks(db.audit("--orphan-after", "60", "--json"))["orphan_intents"]
    assert sorted(d["intent_id"] for d in shorter["detail"]) == ["orphan-new", "orphan-old"]
    longer = db.audit("--orphan-after", "3600", "--json")
    assert longer.exit_code == 0
    assert checks(longer)["orphan_intents"]["count"] == 0
    assert longer.json()["warnings"] == 0


def test_run_scopes_the_orphan_check(db: Db) -> None:
    add_intent(db, "orphan-old", "20 minutes")
    scoped = db.audit("--run", "orphan-old", "--json")
    assert scoped.exit_code == 0
    assert [d["intent_id"] for d in checks(scoped)["orphan_intents"]["detail"]] == ["orphan-old"]
    other = db.audit("--run", db.a, "--json")
    assert other.exit_code == 0
    assert checks(other)["orphan_intents"]["count"] == 0
    assert other.json()["warnings"] == 0


def test_a_warning_does_not_hide_a_failure(db: Db) -> None:
    add_intent(db, "orphan-old", "20 minutes")
    db.execute("UPDATE app.mock_receipts SET seen_count = 2 WHERE run_id = %s", (db.a,))
    result = db.audit("--json")
    assert result.exit_code == 1
    body = result.json()
    assert (body["ok"], body["warnings"]) == (False, 1)
    assert checks(result)["duplicate_effects"]["ok"] is False
