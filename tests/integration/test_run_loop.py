"""The intent run loop through the service layer with a real `sisu worker`: one intent, one
durable RunIntentWF, four stable steps, and every fact about it in rows."""

from __future__ import annotations

import threading
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from sisu.contracts.runs import IntentCreate, RunRequest, RunStarted
from sisu.db.queries import q
from sisu.engine import INTENT_QUEUE
from sisu.errors import NotFound
from sisu.service import intents, views
from sisu.service.backend import Backend
from tests.support.db import rows, table_counts
from tests.support.runs import STEP_IDS, wait_run_done
from tests.support.runview import COUNTED_TABLES, sha256_file
from tests.support.workers import running_worker, worker_home


def new_intent(backend: Backend, goal: str = "run loop", **inputs: object) -> str:
    return intents.create_intent(backend, IntentCreate(goal=goal, inputs=dict(inputs))).intent_id


def workflow_rows(url: str, workflow_id: str) -> list[dict[str, object]]:
    return rows(
        url,
        "SELECT workflow_uuid, status, name FROM dbos.workflow_status WHERE workflow_uuid = %s",
        (workflow_id,),
    )


def test_a_run_succeeds_with_four_steps_and_its_evidence_in_rows(
    backend: Backend, db_url: str, tmp_path: Path
) -> None:
    intent_id = new_intent(backend, tasks=3)
    with running_worker(db_url, tmp_path) as worker:
        started = intents.start_run(backend, intent_id, RunRequest(trace_id="trace-rl-1"))
        assert started.run_id == started.workflow_id == started.intent_id == intent_id
        wait_run_done(db_url, intent_id, worker=worker)

    steps = rows(
        db_url,
        "SELECT step_id, attempt, phase, finished_at FROM app.run_steps WHERE run_id = %s "
        "ORDER BY started_at, step_id",
        (intent_id,),
    )
    assert [(s["step_id"], s["attempt"], s["phase"]) for s in steps] == [
        (step, 1, "succeeded") for step in STEP_IDS
    ]
    assert all(s["finished_at"] is not None for s in steps)

    [run] = rows(db_url, "SELECT * FROM app.runs WHERE id = %s", (intent_id,))
    assert run["status"] == "succeeded"
    assert run["last_step"] == "ExecuteST"
    assert run["next_action"] is None
    assert run["error"] is None
    assert run["retry_count"] == 0
    assert run["trace_id"] == "trace-rl-1"

    wf = workflow_rows(db_url, intent_id)
    assert [(w["status"], w["name"]) for w in wf] == [("SUCCESS", "RunIntentWF")]

    view = views.get_run(backend, intent_id)
    assert view.run_id == view.workflow_id == view.intent_id == intent_id
    assert view.trace_id == "trace-rl-1"
    assert view.status == "succeeded"

    calls = rows(
        db_url,
        "SELECT step_id, request, response FROM app.opencode_calls WHERE run_id = %s",
        (intent_id,),
    )
    assert len(calls) == 1
    assert calls[0]["step_id"] == "CompileST"
    assert calls[0]["request"] is not None
    assert calls[0]["response"] is not None
    assert calls[0]["request"]["runId"] == intent_id

    artifacts = rows(
        db_url,
        "SELECT step_id, idx, kind, uri, inline, sha256 FROM app.artifacts WHERE run_id = %s "
        "ORDER BY step_id, idx",
        (intent_id,),
    )
    files = [a for a in artifacts if a["kind"] == "file"]
    decisions = [a for a in artifacts if a["kind"] == "decision"]
    assert files, artifacts
    workspace = (worker_home(tmp_path) / "workspaces" / intent_id).resolve()
    for artifact in files:
        parts = urlsplit(artifact["uri"])
        assert parts.scheme == "file"
        path = Path(unquote(parts.path))
        assert path.resolve().is_relative_to(workspace), path
        assert artifact["sha256"] == sha256_file(path)
    assert len(decisions) == 1
    assert decisions[0]["step_id"] == "DecideST"
    assert decisions[0]["inline"] is not None

    receipts = rows(
        db_url,
        "SELECT task_key, step_id, seen_count FROM app.mock_receipts WHERE run_id = %s "
        "ORDER BY task_key",
        (intent_id,),
    )
    assert [(r["task_key"], r["step_id"], r["seen_count"]) for r in receipts] == [
        (f"task-{i}", "ExecuteST", 1) for i in (1, 2, 3)
    ]


def test_triggering_again_returns_the_same_run(backend: Backend, db_url: str) -> None:
    intent_id = new_intent(backend)
    first = intents.start_run(backend, intent_id, RunRequest(trace_id="first"))
    second = intents.start_run(backend, intent_id, RunRequest(trace_id="second"))
    assert first.run_id == second.run_id == intent_id
    assert second.workflow_id == intent_id
    assert len(workflow_rows(db_url, intent_id)) == 1
    # The run keeps the trace id of the trigger that created it.
    assert rows(db_url, "SELECT trace_id FROM app.runs WHERE id = %s", (intent_id,)) == [
        {"trace_id": "first"}
    ]


def test_racing_triggers_converge_on_one_workflow(backend: Backend, db_url: str) -> None:
    intent_id = new_intent(backend)
    n = 8
    barrier = threading.Barrier(n)
    results: list[RunStarted] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def trigger(i: int) -> None:
        own = Backend(db_url, app_version="v1", pool_size=1)
        try:
            own.client  # noqa: B018  (build the DBOS client before the race, not during it)
            barrier.wait(timeout=30)
            started = intents.start_run(own, intent_id, RunRequest(trace_id=f"racer-{i}"))
            with lock:
                results.append(started)
        except BaseException as exc:
            with lock:
                errors.append(exc)
        finally:
            own.close()

    threads = [threading.Thread(target=trigger, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert len(results) == n
    assert {(r.run_id, r.workflow_id, r.intent_id) for r in results} == {
        (intent_id, intent_id, intent_id)
    }
    assert len(workflow_rows(db_url, intent_id)) == 1
    assert table_counts(db_url, ["app.runs", "dbos.workflow_status"]) == {
        "app.runs": 1,
        "dbos.workflow_status": 1,
    }


def test_a_run_stays_queued_without_a_worker_and_completes_once_one_starts(
    backend: Backend, db_url: str, tmp_path: Path
) -> None:
    intent_id = new_intent(backend)
    started = intents.start_run(backend, intent_id, RunRequest())
    assert started.status == "queued"
    # Nothing executes workflows here; give a stray executor time to show itself if there were one.
    threading.Event().wait(1.5)
    assert rows(db_url, "SELECT status, last_step FROM app.runs WHERE id = %s", (intent_id,)) == [
        {"status": "queued", "last_step": None}
    ]
    assert [w["status"] for w in workflow_rows(db_url, intent_id)] == ["ENQUEUED"]
    assert rows(db_url, "SELECT 1 FROM app.run_steps WHERE run_id = %s", (intent_id,)) == []

    with running_worker(db_url, tmp_path) as worker:
        wait_run_done(db_url, intent_id, worker=worker)
    assert [w["status"] for w in workflow_rows(db_url, intent_id)] == ["SUCCESS"]


def test_concurrent_runs_on_one_worker_all_succeed_first_time(
    backend: Backend, db_url: str, tmp_path: Path
) -> None:
    # Runs executing side by side must not fail each other (their step transactions touch
    # different rows of the same tables).
    ids = [new_intent(backend, f"concurrent {i}", tasks=2) for i in range(10)]
    with running_worker(db_url, tmp_path) as worker:
        for intent_id in ids:
            intents.start_run(backend, intent_id, RunRequest())
        for intent_id in ids:
            wait_run_done(db_url, intent_id, worker=worker)
    steps = rows(
        db_url,
        "SELECT run_id, count(*)::int AS n, max(attempt) AS max_attempt, "
        "bool_and(phase = 'succeeded') AS ok FROM app.run_steps GROUP BY run_id",
    )
    assert {s["run_id"]: (s["n"], s["max_attempt"], s["ok"]) for s in steps} == {
        i: (4, 1, True) for i in ids
    }
    assert rows(
        db_url, "SELECT count(*)::int AS n, max(seen_count) AS seen FROM app.mock_receipts"
    ) == [{"n": 20, "seen": 1}]


def test_start_run_of_an_unknown_intent_is_not_found_and_writes_nothing(
    backend: Backend, db_url: str
) -> None:
    before = table_counts(db_url, COUNTED_TABLES)
    with pytest.raises(NotFound) as info:
        intents.start_run(backend, "no-such-intent", RunRequest(trace_id="t"))
    assert info.value.code == "not_found"
    assert table_counts(db_url, COUNTED_TABLES) == before == {t: 0 for t in COUNTED_TABLES}


def test_a_run_enqueued_without_its_intent_reads_it_in_its_steps(
    backend: Backend, db_url: str, tmp_path: Path
) -> None:
    """A run enqueued by an older sisu, whose workflow got only the run id and the retry policy,
    reads the intent in its steps: CompileST plans its goal, and ExecuteST honours its drill
    knob (one injected transient fault, then success)."""
    intent_id = new_intent(
        backend, goal="enqueued the old way", tasks=2, faults={"ExecuteST": {"times": 1}}
    )
    with backend.transaction() as (conn, cur):
        cur.execute(
            q("insert_run"),
            {
                "id": intent_id,
                "trace_id": None,
                "lane": "batch",
                "priority": 100,
                "queue_name": INTENT_QUEUE,
                "app_version": "v1",
            },
        )
        backend.client.enqueue_in_transaction(
            conn,
            {
                "workflow_name": intents.RUN_WORKFLOW,
                "queue_name": INTENT_QUEUE,
                "workflow_id": intent_id,
                "app_version": "v1",
            },
            intent_id,
            {"maxAttempts": 3, "backoffSeconds": 0.1},
        )
    with running_worker(db_url, tmp_path) as worker:
        wait_run_done(db_url, intent_id, worker=worker)

    steps = rows(
        db_url,
        "SELECT step_id, attempt, phase FROM app.run_steps WHERE run_id = %s ORDER BY finished_at",
        (intent_id,),
    )
    assert [(s["step_id"], s["attempt"], s["phase"]) for s in steps] == [
        ("CompileST", 1, "succeeded"),
        ("ApplyPatchST", 1, "succeeded"),
        ("DecideST", 1, "succeeded"),
        ("ExecuteST", 1, "failed"),
        ("ExecuteST", 2, "succeeded"),
    ]
    [call] = rows(db_url, "SELECT request FROM app.opencode_calls WHERE run_id = %s", (intent_id,))
    assert call["request"]["goal"] == "enqueued the old way"
    assert len(rows(db_url, "SELECT 1 FROM app.mock_receipts WHERE run_id = %s", (intent_id,))) == 2
