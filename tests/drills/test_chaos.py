"""`sisu chaos` (Walkthrough E): real workers SIGKILLed at random moments — including after a
delivery to the outside system and before the step's checkpoint — the embedded PostgreSQL
restarted, the api-shim killed mid-request. The drill's JSON must agree with the rows: every run
succeeded, no receipt seen twice, every compiler call recorded.

Small iteration counts keep CI fast; the issue's large runs are documented commands:
`sisu chaos --iterations 20 --kill-point random --json` and
`sisu chaos --iterations 10 --kill-point after-effect --json`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from sisu.contracts.runs import EventRequest, IntentCreate, RunRequest
from sisu.drills.processes import WorkerProcess
from sisu.service import human, intents
from sisu.service.backend import Backend
from tests.support.cli import Result, run_sisu, sisu_env_for
from tests.support.db import cloned_database, rows, scalar, throwaway_home
from tests.support.polling import poll
from tests.support.runs import wait_run_done, wait_run_status
from tests.support.workers import INTENT_QUEUE

CHAOS_KEYS = {
    "ok",
    "iterations",
    "kills",
    "runs",
    "succeeded",
    "duplicates",
    "pendingLeft",
    "recoverySeconds",
}
DRILL_TIMEOUT = 240


def execute(url: str, statement: str, params: Any = None) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement, params)


@dataclass
class Drill:
    result: Result
    url: str
    env: dict[str, str]

    @property
    def out(self) -> dict[str, Any]:
        body: dict[str, Any] = self.result.json()
        return body

    def explain(self) -> str:
        return f"exit {self.result.exit_code}\nstdout: {self.result.stdout}\n{self.result.stderr}"


@pytest.fixture(scope="module")
def drill_runner(
    pg_admin_url: str, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """Runs one `sisu chaos` per call, each on a database of its own (dropped at module end)."""
    with ExitStack() as stack:

        def run(args: list[str]) -> Drill:
            url = stack.enter_context(cloned_database(pg_admin_url, template_db, "sisu_chaos"))
            env = sisu_env_for(url, tmp_path_factory.mktemp("home"))
            return Drill(run_sisu(["chaos", *args], env, timeout=DRILL_TIMEOUT), url, env)

        yield run


def assert_passed(drill: Drill, *, kills: int) -> None:
    assert drill.result.exit_code == 0, drill.explain()
    out = drill.out
    assert set(out) >= CHAOS_KEYS, sorted(out)
    assert set(out["recoverySeconds"]) >= {"p50", "max"}
    assert out["ok"] is True
    assert out["kills"] == kills
    assert out["duplicates"] == 0
    assert out["runs"] > 0
    assert out["succeeded"] == out["runs"]
    assert out["pendingLeft"] == 0


def assert_rows_agree(drill: Drill) -> None:
    """What the ops manual checks by hand, plus: the JSON's run count is the rows' run count."""
    assert rows(drill.url, "SELECT seen_count FROM app.mock_receipts WHERE seen_count > 1") == []
    statuses = rows(
        drill.url,
        "SELECT r.status, w.status AS workflow_status, count(*)::int AS n FROM app.runs r "
        "LEFT JOIN dbos.workflow_status w ON w.workflow_uuid = r.id GROUP BY 1, 2",
    )
    assert statuses == [
        {"status": "succeeded", "workflow_status": "SUCCESS", "n": drill.out["runs"]}
    ]


# --- --kill-point random ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def random_drill(drill_runner: Any) -> Drill:
    drill: Drill = drill_runner(
        ["--iterations", "3", "--kill-point", "random", "--seed", "7", "--json"]
    )
    return drill


def test_random_drill_exits_0_with_three_kills_and_no_duplicates(random_drill: Drill) -> None:
    assert_passed(random_drill, kills=3)
    assert random_drill.out["iterations"] == 3


def test_random_drill_rows_show_no_duplicate_and_every_run_succeeded(random_drill: Drill) -> None:
    assert_rows_agree(random_drill)
    # Faults actually landed on runs that had effects to duplicate.
    assert scalar(random_drill.url, "SELECT count(*) FROM app.mock_receipts") > 0


def test_random_drill_every_compiler_call_has_request_and_response(random_drill: Drill) -> None:
    calls = rows(random_drill.url, "SELECT run_id, request, response FROM app.opencode_calls")
    assert calls
    assert all(c["request"] is not None and c["response"] is not None for c in calls), calls
    assert len({c["run_id"] for c in calls}) == random_drill.out["runs"]


def test_random_drill_logs_each_kill(random_drill: Drill) -> None:
    log = random_drill.out["killLog"]
    assert [k["iteration"] for k in log] == [1, 2, 3]
    assert {k["fault"] for k in log} == {"worker-kill"}
    assert {k["point"] for k in log} <= {"execute", "after-effect"}
    recoveries = [k["recoverySeconds"] for k in log if k["recoverySeconds"] is not None]
    assert recoveries
    assert random_drill.out["recoverySeconds"]["max"] == max(recoveries)


def test_audit_exits_0_after_the_random_drill(random_drill: Drill) -> None:
    audit = run_sisu(["audit", "--json"], random_drill.env)
    assert audit.exit_code == 0, audit.stdout
    assert audit.json()["ok"] is True


# --- --kill-point after-effect -----------------------------------------------------------------


@pytest.fixture(scope="module")
def after_effect_drill(drill_runner: Any) -> Drill:
    drill: Drill = drill_runner(["--iterations", "2", "--kill-point", "after-effect", "--json"])
    return drill


def test_after_effect_drill_exits_0_with_zero_duplicates(after_effect_drill: Drill) -> None:
    assert_passed(after_effect_drill, kills=2)
    assert_rows_agree(after_effect_drill)
    assert [k["point"] for k in after_effect_drill.out["killLog"]] == ["after-effect"] * 2


def test_each_kill_landed_after_the_delivery_and_before_the_checkpoint(
    after_effect_drill: Drill,
) -> None:
    url = after_effect_drill.url
    log = after_effect_drill.out["killLog"]
    assert len(log) == 2
    for kill in log:
        run_id = kill["runId"]
        at = datetime.fromisoformat(kill["at"])
        # The drill's evidence at the kill: delivered, not checkpointed.
        assert kill["receiptsAtKill"] >= 1, kill
        assert kill["executeDoneAtKill"] is False, kill
        # The rows agree: deliveries older than the kill …
        delivered_before = scalar(
            url,
            "SELECT count(*) FROM app.mock_receipts WHERE run_id = %s AND first_seen_at < %s",
            (run_id, at),
        )
        assert delivered_before >= kill["receiptsAtKill"]
        # … and the one ExecuteST checkpoint was started and committed by the next worker.
        [execute] = rows(
            url,
            "SELECT attempt, started_at, finished_at, output FROM app.run_steps "
            "WHERE run_id = %s AND step_id = 'ExecuteST' AND phase = 'succeeded'",
            (run_id,),
        )
        assert execute["started_at"] > at
        assert execute["finished_at"] > at
        # The re-executed step looked the earlier delivery up instead of delivering again.
        reused = [r for r in execute["output"]["receipts"] if r["new"] is False]
        assert len(reused) >= kill["receiptsAtKill"], execute["output"]
        receipts = rows(
            url,
            "SELECT receipt_key, seen_count FROM app.mock_receipts WHERE run_id = %s",
            (run_id,),
        )
        assert receipts
        assert {r["seen_count"] for r in receipts} == {1}
        assert sorted(r["receipt_key"] for r in receipts) == sorted(
            r["receiptKey"] for r in execute["output"]["receipts"]
        )
        # Recovery time is kill → that run's next checkpoint, which is this commit.
        assert kill["recoverySeconds"] == pytest.approx(
            (execute["finished_at"] - at).total_seconds(), abs=0.05
        )


def test_after_effect_runs_have_one_succeeded_attempt_per_step(after_effect_drill: Drill) -> None:
    killed = {k["runId"] for k in after_effect_drill.out["killLog"]}
    attempts = rows(
        after_effect_drill.url,
        "SELECT run_id, step_id, count(*)::int AS n FROM app.run_steps "
        "WHERE run_id = ANY(%s) AND phase = 'succeeded' GROUP BY 1, 2",
        (list(killed),),
    )
    assert len(attempts) == 4 * len(killed)
    assert {a["n"] for a in attempts} == {1}


# --- --fault postgres-restart ------------------------------------------------------------------


def test_postgres_restart_on_the_embedded_server_completes_every_run() -> None:
    with throwaway_home("sc-") as home:
        env = sisu_env_for(None, home)
        result = run_sisu(
            ["chaos", "--fault", "postgres-restart", "--iterations", "1", "--json"],
            env,
            timeout=DRILL_TIMEOUT,
        )
        status = run_sisu(["db", "status", "--json"], env)
        assert result.exit_code == 0, f"{result.stdout}\n{result.stderr}"
        out = result.json()
        assert out["skipped"] is None
        assert out["kills"] == 1
        assert out["killLog"][0]["fault"] == "postgres-restart"
        assert out["runs"] > 0
        assert out["succeeded"] == out["runs"]
        assert out["duplicates"] == 0
        assert out["pendingLeft"] == 0
        assert status.exit_code == 0, status.stderr
        url = status.json()["url"]
        assert status.json()["mode"] == "embedded"
        assert rows(url, "SELECT seen_count FROM app.mock_receipts WHERE seen_count > 1") == []
        assert rows(url, "SELECT DISTINCT status FROM app.runs") == [{"status": "succeeded"}]


def test_postgres_restart_on_an_external_server_is_skipped(
    sisu_env: dict[str, str], db_url: str
) -> None:
    result = run_sisu(
        ["chaos", "--fault", "postgres-restart", "--iterations", "1", "--json"], sisu_env
    )
    assert result.exit_code == 0, result.stderr
    out = result.json()
    assert out["skipped"]
    assert out["kills"] == 0
    assert out["runs"] == 0
    # It did not submit anything it would then leave behind.
    assert scalar(db_url, "SELECT count(*) FROM app.intents") == 0


# --- --fault shim-kill -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shim_drill(drill_runner: Any) -> Drill:
    drill: Drill = drill_runner(
        ["--fault", "shim-kill", "--iterations", "2", "--runs", "4", "--json"]
    )
    return drill


def test_shim_kill_drill_exits_0_with_zero_duplicates(shim_drill: Drill) -> None:
    assert_passed(shim_drill, kills=2)
    assert {k["fault"] for k in shim_drill.out["killLog"]} == {"shim-kill"}


def test_every_accepted_intent_has_exactly_one_workflow(shim_drill: Drill) -> None:
    url = shim_drill.url
    per_run = rows(
        url,
        "SELECT r.id, count(w.workflow_uuid)::int AS workflows, min(w.status) AS status "
        "FROM app.runs r LEFT JOIN dbos.workflow_status w ON w.workflow_uuid = r.id "
        "GROUP BY r.id",
    )
    assert len(per_run) == shim_drill.out["runs"]
    assert {(r["workflows"], r["status"]) for r in per_run} == {(1, "SUCCESS")}
    # No workflow without its run, and no run without its intent.
    assert (
        scalar(
            url,
            "SELECT count(*) FROM dbos.workflow_status w "
            "WHERE NOT EXISTS (SELECT 1 FROM app.runs r WHERE r.id = w.workflow_uuid)",
        )
        == 0
    )
    assert (
        scalar(
            url,
            "SELECT count(*) FROM app.runs r "
            "WHERE NOT EXISTS (SELECT 1 FROM app.intents i WHERE i.id = r.id)",
        )
        == 0
    )
    assert_rows_agree(shim_drill)


def test_shim_kill_submits_the_requested_number_of_intents(shim_drill: Drill) -> None:
    assert shim_drill.out["runs"] == 4


def test_shim_kill_retries_leave_no_orphan_intent(shim_drill: Drill) -> None:
    """A client whose 201 was lost to a kill retries with the same Idempotency-Key: every intent
    in the drill's database is an accepted one, each created under a key of its own."""
    assert shim_drill.out["intents"] == shim_drill.out["runs"]
    assert rows(
        shim_drill.url,
        "SELECT count(*)::int AS intents, count(DISTINCT idempotency_key)::int AS keys, "
        "count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM app.runs r WHERE r.id = i.id))::int "
        "AS without_run FROM app.intents i",
    ) == [{"intents": shim_drill.out["runs"], "keys": shim_drill.out["runs"], "without_run": 0}]


# --- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args", [["--kill-point", "sometimes"], ["--fault", "meteor"]], ids=["kill-point", "fault"]
)
def test_a_bad_choice_is_a_validation_error(
    args: list[str], sisu_env: dict[str, str], db_url: str
) -> None:
    result = run_sisu(["chaos", *args, "--iterations", "1", "--json"], sisu_env)
    assert result.exit_code != 0
    body = result.json()
    assert set(body) == {"error", "message", "details"}
    assert body["error"] == "validation_error"
    assert scalar(db_url, "SELECT count(*) FROM app.intents") == 0


# --- the window a drill hit: step committed, DBOS's step record not yet written -----------------


def test_a_run_recovered_after_its_step_committed_replays_it(db_url: str, tmp_path: Path) -> None:
    """A kill after a datasource step committed but before DBOS recorded the step in
    operation_outputs (a chaos drill hit this window: a run ended failed). Replaying that
    step must return its recorded result. Made deterministic here: a run waits for input, its
    worker is killed, the ApplyPatchST record is removed from operation_outputs (the step's
    own checkpoint in dbos.datasource_outputs stays), and a second worker — which has already
    run an intent — takes the run over."""

    def worker(name: str) -> WorkerProcess:
        return WorkerProcess(
            url=db_url,
            executor_id=name,
            app_version="v1",
            queues=(INTENT_QUEUE,),
            log_path=tmp_path / f"{name}.log",
            extra_env={"SISU_HOME": str(tmp_path / "home")},
        )

    backend = Backend(db_url, app_version="v1")
    first, second = worker("replay-a"), worker("replay-b")
    try:
        first.start()
        asked = intents.create_intent(backend, IntentCreate(goal="ask before delivering"))
        intents.start_run(backend, asked.intent_id, RunRequest())
        wait_run_status(db_url, asked.intent_id, "waiting_input", worker=first)
        first.kill()

        [record] = rows(
            db_url,
            "SELECT function_id FROM dbos.operation_outputs "
            "WHERE workflow_uuid = %s AND function_name = 'ApplyPatchST'",
            (asked.intent_id,),
        )
        checkpoint = (asked.intent_id, record["function_id"])
        assert scalar(
            db_url,
            "SELECT count(*) FROM dbos.datasource_outputs WHERE workflow_id = %s AND step_id = %s",
            checkpoint,
        ) == 1  # fmt: skip
        execute(
            db_url,
            "DELETE FROM dbos.operation_outputs WHERE workflow_uuid = %s AND function_id = %s",
            checkpoint,
        )

        second.start()
        plain = intents.create_intent(backend, IntentCreate(goal="warm the pool", inputs={}))
        intents.start_run(backend, plain.intent_id, RunRequest())
        wait_run_done(db_url, plain.intent_id, worker=second)

        # The killed worker is gone for good: the live one takes its pending run over.
        execute(db_url, "UPDATE app.workers SET stopped_at = now() WHERE executor_id = 'replay-a'")
        poll(
            "the live worker to take the run over",
            lambda: scalar(
                db_url,
                "SELECT 1 FROM app.run_steps WHERE run_id = %s AND phase = 'failed' UNION ALL "
                "SELECT 1 FROM dbos.operation_outputs WHERE workflow_uuid = %s "
                "AND function_id = %s",
                (asked.intent_id, asked.intent_id, record["function_id"]),
            ),
            timeout=30,
        )
        assert rows(
            db_url,
            "SELECT step_id, attempt, phase FROM app.run_steps "
            "WHERE run_id = %s AND step_id = 'ApplyPatchST'",
            (asked.intent_id,),
        ) == [{"step_id": "ApplyPatchST", "attempt": 1, "phase": "succeeded"}]
        wait_run_status(db_url, asked.intent_id, "waiting_input", worker=second)
        human.send_event(
            backend, asked.intent_id, EventRequest(type="input", payload={"answer": "yes"})
        )
        wait_run_done(db_url, asked.intent_id, worker=second)
    finally:
        backend.close()
        first.stop()
        second.stop()
