"""`sisu gc`: retention of finished runs, on runs made by real workers.

One module-wide fleet covers every status: succeeded (plain, answered by a human, and a
sandboxed command with its output files), failed (a question nobody answered, a command that
exited non-zero), canceled (before any worker took it, and a change rejected at its approval
gate) — and the live ones gc must never take: waiting_input, retries_exceeded, running (inside a
slow step on a live worker) and queued (on a queue no worker serves)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pexpect
import psycopg
import pytest
from psycopg import sql

from sisu.contracts.runs import EventRequest
from sisu.db.queries import q
from sisu.drills.processes import WorkerProcess
from sisu.service import human, repair
from sisu.service.gc import TABLES
from tests.support.cli import FAST_BACKOFF, SISU, fast_retry_env, run_sisu
from tests.support.db import rows, scalar
from tests.support.polling import poll
from tests.support.runs import (
    ANSWER,
    ASK_GOAL,
    fast_backend,
    start_intent,
    wait_run_done,
    wait_run_status,
    wait_workflow_status,
)
from tests.support.workers import intent_worker, running_worker, wait_worker_ready

FINISHED = ("succeeded", "failed", "canceled")


@dataclass
class Fleet:
    url: str
    env: dict[str, str]
    home: Path
    worker: WorkerProcess
    finished: dict[str, str] = field(default_factory=dict)  # run id -> status
    live: dict[str, str] = field(default_factory=dict)

    @property
    def all_ids(self) -> list[str]:
        return [*self.finished, *self.live]


def sandbox_worker(url: str, tmp: Path) -> WorkerProcess:
    """A worker whose ExecuteST runs the plan's testCommand (unisolated: these tests are about
    the output files it leaves in $SISU_HOME/logs/runs, not about the sandbox)."""
    args = ("--executor", "sandbox", "--sandbox-isolation", "none")
    fast = {"SISU_STEP_BACKOFF_SECONDS": FAST_BACKOFF}
    return intent_worker(url, tmp, "gc-sbx", *args, env=fast).start()


def answer(backend: Any, run_id: str, kind: str, payload: dict[str, Any]) -> None:
    human.send_event(
        backend, run_id, EventRequest.model_validate({"type": kind, "payload": payload})
    )


def active_workflows(url: str) -> set[str]:
    found = rows(url, "SELECT active_workflows FROM app.workers WHERE stopped_at IS NULL")
    return {wf for r in found for wf in r["active_workflows"]}


@pytest.fixture(scope="module")
def fleet(module_db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    url = module_db_url
    tmp = tmp_path_factory.mktemp("gc")
    finished: dict[str, str] = {}
    live: dict[str, str] = {}
    with fast_backend(url) as b:
        # Canceled before any worker runs: a run with no step, no workspace.
        canceled_queued = start_intent(b, "canceled before it ran")
        repair.cancel_run(b, canceled_queued)
        finished[canceled_queued] = "canceled"

        # Runs whose command leaves output files in $SISU_HOME/logs/runs/<runId>.
        sbx = sandbox_worker(url, tmp)
        try:
            wait_worker_ready(url, sbx)
            ok = start_intent(b, "a command that passes", inputs={"testCommand": "echo ok"})
            bad = start_intent(
                b, "a command that fails", inputs={"testCommand": "echo out; echo err >&2; exit 3"}
            )
            wait_run_done(url, ok, worker=sbx)
            wait_run_status(url, bad, "failed", worker=sbx)
            wait_workflow_status(url, bad, "ERROR")
        finally:
            sbx.stop()
        finished[ok] = "succeeded"
        finished[bad] = "failed"

        with running_worker(url, tmp, name="gc", fast_retries=True, kill=True) as worker:
            wait_worker_ready(url, worker)
            plain = start_intent(b, "plain work", inputs={"tasks": 2})
            answered = start_intent(b, ASK_GOAL)
            timed_out = start_intent(b, ASK_GOAL, constraints={"inputTimeoutSeconds": 1})
            rejected = start_intent(
                b, "a change behind a gate", constraints={"requireApproval": True}
            )
            waiting = start_intent(b, ASK_GOAL)
            exhausted = start_intent(
                b, "flaky", inputs={"faults": {"ExecuteST": {"kind": "net_timeout", "times": 99}}}
            )
            running = start_intent(b, "slow", inputs={"sleepMs": 900_000})
            queued = start_intent(b, "nobody serves this queue", queue_partition_key="p1")

            for run_id in (answered, rejected, waiting):
                wait_run_status(url, run_id, "waiting_input", worker=worker)
            answer(b, answered, "input", ANSWER)
            answer(b, rejected, "approval", {"approved": False, "reason": "not this one"})
            for run_id in (plain, answered):
                wait_run_done(url, run_id, worker=worker)
            wait_run_status(url, timed_out, "failed", worker=worker)
            wait_workflow_status(url, timed_out, "ERROR")
            wait_run_status(url, rejected, "canceled", worker=worker)
            wait_workflow_status(url, rejected, "SUCCESS")
            wait_workflow_status(url, canceled_queued, "CANCELLED")
            wait_run_status(url, exhausted, "retries_exceeded", worker=worker)
            wait_run_status(url, running, "running", worker=worker)
            finished.update(
                {
                    plain: "succeeded",
                    answered: "succeeded",
                    timed_out: "failed",
                    rejected: "canceled",
                }
            )
            live.update(
                {
                    waiting: "waiting_input",
                    exhausted: "retries_exceeded",
                    running: "running",
                    queued: "queued",
                }
            )
            assert {r["status"] for r in rows(url, "SELECT status FROM app.runs")} == {
                *FINISHED, "waiting_input", "retries_exceeded", "running", "queued"
            }  # fmt: skip
            # The worker's heartbeat no longer names a finished run's thread (else gc would
            # rightly leave that run for later).
            poll(
                "the heartbeat to drop finished runs",
                lambda: True if not (active_workflows(url) & set(finished)) else None,
                timeout=30,
            )
            # Failovers as a worker records them: one naming only finished runs, one naming a
            # live run too.
            f = list(finished)
            with psycopg.connect(url) as conn:
                for ids in ([f[0], f[1]], [f[2], waiting]):
                    conn.execute(
                        q("record_failover"),
                        {"dead": "gone-1", "me": worker.executor_id, "app_version": "v1",
                         "n": len(ids), "ids": ids},
                    )  # fmt: skip
            yield Fleet(
                url, fast_retry_env(url, tmp / "home"), tmp / "home", worker, finished, live
            )


def tables(url: str) -> list[str]:
    """Every table of both schemas."""
    found = rows(
        url,
        "SELECT table_schema || '.' || table_name AS name FROM information_schema.tables "
        "WHERE table_schema IN ('app', 'dbos') AND table_type = 'BASE TABLE' ORDER BY 1",
    )
    return [r["name"] for r in found]


def mentions(url: str, ids: list[str]) -> dict[tuple[str, str], int]:
    """(table, run id) -> how many rows of that table mention the id anywhere (the whole row
    as text: any column, array or JSON document), over every table of app.* and dbos.*."""
    counts: dict[tuple[str, str], int] = {}
    with psycopg.connect(url) as conn:
        for name in tables(url):
            schema, table = name.split(".")
            query = sql.SQL(
                "SELECT p, count(*) FROM {} t, unnest(%s::text[]) p "
                "WHERE strpos(t::text, p) > 0 GROUP BY p"
            ).format(sql.Identifier(schema, table))
            for run_id, n in conn.execute(query, (ids,)).fetchall():
                counts[(name, run_id)] = n
    return counts


def table_sizes(url: str) -> dict[str, int]:
    def size(conn: psycopg.Connection[Any], name: str) -> int:
        counted = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(*name.split(".")))
        row = conn.execute(counted).fetchone()
        assert row is not None
        return int(row[0])

    with psycopg.connect(url) as conn:
        return {name: size(conn, name) for name in tables(url)}


def folders(home: Path) -> set[str]:
    """Every run folder under the home: workspaces/<id> and logs/runs/<id>."""
    found = set()
    for kind, root in (("workspaces", home / "workspaces"), ("logs", home / "logs" / "runs")):
        if root.is_dir():
            found |= {f"{kind}/{p.name}" for p in root.iterdir()}
    return found


def expected_rows(url: str, ids: list[str]) -> dict[str, int]:
    """What removing `ids` removes, table by table, counted here independently of gc."""
    by_run = {
        "app.intents": "id", "app.runs": "id", "app.run_steps": "run_id",
        "app.artifacts": "run_id", "app.opencode_calls": "run_id", "app.human_events": "run_id",
        "app.mock_receipts": "run_id", "app.deliveries": "run_id",
        "dbos.workflow_status": "workflow_uuid", "dbos.workflow_input": "workflow_uuid",
        "dbos.workflow_output": "workflow_uuid", "dbos.operation_outputs": "workflow_uuid",
        "dbos.notifications": "destination_uuid", "dbos.workflow_events": "workflow_uuid",
        "dbos.workflow_events_history": "workflow_uuid", "dbos.streams": "workflow_uuid",
        "dbos.datasource_outputs": "workflow_id",
    }  # fmt: skip
    counts = {}
    for name, column in by_run.items():
        query = sql.SQL("SELECT count(*) FROM {} WHERE {} = ANY(%s)").format(
            sql.Identifier(*name.split(".")), sql.Identifier(column)
        )
        counts[name] = int(scalar(url, query.as_string(), (ids,)))
    return counts


def gc_json(fleet: Fleet, *args: str) -> dict[str, Any]:
    result = run_sisu(["gc", *args, "--json"], fleet.env)
    assert result.exit_code == 0, result.stderr
    body: dict[str, Any] = result.json()
    return body


def test_bad_input_and_a_missing_confirmation_remove_nothing(fleet: Fleet) -> None:
    sizes, present = table_sizes(fleet.url), folders(fleet.home)
    for args, code in (
        (["--older-than", "3x", "--yes"], "validation_error"),
        (["--older-than", "30", "--yes"], "validation_error"),
        (["--older-than", "-1d", "--yes"], "validation_error"),
        (["--older-than", "0s", "--yes", "--batch-size", "0"], "validation_error"),
        # Not on a terminal (cron, CI, this test) and not confirmed.
        (["--older-than", "0s"], "confirmation_required"),
    ):
        result = run_sisu(["gc", *args, "--json"], fleet.env)
        assert result.exit_code == 2, (args, result.stdout, result.stderr)
        assert result.json()["error"] == code, args
        plain = run_sisu(["gc", *args], fleet.env)
        assert plain.exit_code == 2, (args, plain.stderr)
        assert plain.stdout == ""
    missing = run_sisu(["gc", "--yes"], fleet.env)
    assert missing.exit_code == 2  # --older-than is required: no default deletes by surprise
    # Every run here is minutes old: a day's retention takes none of them.
    body = gc_json(fleet, "--older-than", "1d", "--yes")
    assert body["runs"] == 0
    assert body["byStatus"] == dict.fromkeys(FINISHED, 0)
    assert table_sizes(fleet.url) == sizes
    assert folders(fleet.home) == present


def test_gc_removes_finished_runs_and_leaves_live_ones_whole(fleet: Fleet) -> None:
    url, finished, live = fleet.url, list(fleet.finished), list(fleet.live)
    before = mentions(url, fleet.all_ids)
    assert {run_id for (_, run_id) in before} == set(fleet.all_ids)
    sizes, present = table_sizes(url), folders(fleet.home)
    expected = expected_rows(url, finished)
    assert expected["app.human_events"] == 2 and expected["app.mock_receipts"] >= 2
    # Folders of finished runs: every run that reached ApplyPatchST has a workspace, and the
    # two sandboxed commands left their output.
    finished_folders = {f for f in present if f.split("/")[-1] in fleet.finished}
    assert {f for f in finished_folders if f.startswith("logs/")} == {
        f"logs/{run_id}" for run_id, status in fleet.finished.items()
        if rows(url, "SELECT 1 FROM app.intents WHERE id = %s AND inputs ? 'testCommand'",
                (run_id,))
    }  # fmt: skip
    assert len([f for f in finished_folders if f.startswith("workspaces/")]) == len(finished) - 1

    # --dry-run counts exactly what will go, and removes nothing.
    dry = gc_json(fleet, "--older-than", "0s", "--dry-run")
    assert list(dry) == [
        "runs", "dryRun", "olderThan", "cutoff", "byStatus", "rows", "workspaces", "logs",
        "unremoved",
    ]  # fmt: skip
    assert dry["dryRun"] is True and dry["olderThan"] == "0s"
    assert dry["runs"] == len(finished)
    assert dry["byStatus"] == {s: list(fleet.finished.values()).count(s) for s in FINISHED}
    assert dry["byStatus"] == {"succeeded": 3, "failed": 2, "canceled": 2}
    assert dry["rows"] == {t: expected[t] for t in TABLES}
    assert dry["workspaces"] == len(finished) - 1 and dry["logs"] == 2
    assert table_sizes(url) == sizes
    assert folders(fleet.home) == present

    # A run another transaction holds (a retry or cancel in progress) is skipped, not waited on.
    held = next(r for r, s in fleet.finished.items() if s == "failed")
    with psycopg.connect(url) as lock:
        lock.execute("SELECT 1 FROM app.runs WHERE id = %s FOR UPDATE", (held,))
        first = gc_json(fleet, "--older-than", "0s", "--yes", "--batch-size", "2")
        assert first["dryRun"] is False
        assert first["runs"] == len(finished) - 1
        assert scalar(url, "SELECT status FROM app.runs WHERE id = %s", (held,)) == "failed"
        lock.rollback()
    second = gc_json(fleet, "--older-than", "0s", "--yes")
    assert second["runs"] == 1 and second["byStatus"] == {
        "succeeded": 0,
        "failed": 1,
        "canceled": 0,
    }
    removed = {t: first["rows"][t] + second["rows"][t] for t in TABLES}
    assert removed == dry["rows"]
    assert first["workspaces"] + second["workspaces"] == dry["workspaces"]
    assert first["logs"] + second["logs"] == dry["logs"]
    assert first["unremoved"] == second["unremoved"] == []

    # Nothing anywhere mentions a removed run; each table lost exactly the rows counted.
    after = mentions(url, fleet.all_ids)
    assert {run_id for (_, run_id) in after} == set(live)
    assert folders(fleet.home) == present - finished_folders
    new_sizes = table_sizes(url)
    for table in TABLES:
        assert sizes[table] - new_sizes[table] == removed[table], table
    # Failovers stay (worker history), naming only the runs that are left.
    waiting = next(r for r, s in fleet.live.items() if s == "waiting_input")
    assert [
        r["workflow_ids"] for r in rows(url, "SELECT workflow_ids FROM app.failovers ORDER BY id")
    ] == [[], [waiting]]

    # The live runs are whole: the same rows as before, the same status, their folders.
    assert after == {k: v for k, v in before.items() if k[1] in fleet.live}
    for run_id, status in fleet.live.items():
        assert scalar(url, "SELECT status FROM app.runs WHERE id = %s", (run_id,)) == status
    assert {f for f in present if f.split("/")[-1] in fleet.live} <= folders(fleet.home)
    assert fleet.worker.alive()
    audit = run_sisu(["audit", "--json"], fleet.env)
    assert audit.exit_code == 0, audit.stdout
    assert audit.json()["ok"] is True

    # Nothing finished is left: another gc finds nothing to do.
    again = gc_json(fleet, "--older-than", "0s", "--yes")
    assert again["runs"] == 0 and set(again["rows"].values()) == {0}


def test_on_a_terminal_gc_shows_what_goes_and_asks_first(
    db_url: str, sisu_env: dict[str, str]
) -> None:
    with fast_backend(db_url) as b:
        run_id = start_intent(b, "canceled before it ran")
        repair.cancel_run(b, run_id)
    child = pexpect.spawn(
        SISU, ["gc", "--older-than", "0s"], env=sisu_env, encoding="utf-8", timeout=60
    )
    child.expect(r"would remove 1 finished run")
    child.expect(r"Remove these 1 run\(s\) for good\? \[y/N\]")
    child.sendline("n")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1
    assert scalar(db_url, "SELECT count(*) FROM app.runs WHERE id = %s", (run_id,)) == 1

    child = pexpect.spawn(
        SISU, ["gc", "--older-than", "0s"], env=sisu_env, encoding="utf-8", timeout=60
    )
    child.expect(r"Remove these 1 run\(s\) for good\? \[y/N\]")
    child.sendline("y")
    child.expect(r"removed 1 finished run")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    for table in ("app.runs", "app.intents", "dbos.workflow_status"):
        assert scalar(db_url, f"SELECT count(*) FROM {table}") == 0, table
