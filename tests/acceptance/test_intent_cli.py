"""`sisu intent …`, `sisu run …` and `sisu demo` as an operator runs them: the installed binary,
in a real terminal (pexpect) or with stdout and stderr kept apart, straight on the database — no
HTTP server — with a real `sisu worker` executing the runs."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pexpect
import psycopg
import pytest

from sisu.drills.processes import WorkerProcess
from tests.support.cli import SISU, Result, pty_run, run_sisu, spawn_sisu
from tests.support.db import rows, scalar
from tests.support.runs import STEP_IDS, run_status
from tests.support.runview import ERROR_KEYS, assert_runview_shape
from tests.support.workers import running_worker


@pytest.fixture
def worker(db_url: str, tmp_path: Path) -> Iterator[WorkerProcess]:
    with running_worker(db_url, tmp_path, name="cli") as w:
        yield w


def ok_json(result: Result) -> Any:
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr)
    return result.json()


def error_json(result: Result, exit_code: int, code: str) -> dict[str, Any]:
    assert result.exit_code == exit_code, (result.exit_code, result.stdout, result.stderr)
    body: dict[str, Any] = result.json()
    assert set(body) == ERROR_KEYS, body
    assert body["error"] == code, body
    return body


def create(env: dict[str, str], *args: str) -> str:
    created = ok_json(run_sisu(["intent", "create", "--goal", "g", *args, "--json"], env))
    assert list(created) == ["intentId"]
    return str(created["intentId"])


def intent_count(url: str) -> int:
    return int(scalar(url, "SELECT count(*) FROM app.intents"))


def test_create_run_wait_show_and_list(
    sisu_env: dict[str, str], db_url: str, worker: WorkerProcess
) -> None:
    intent_id = create(sisu_env, "--inputs", '{"tasks":2}')
    assert rows(db_url, "SELECT goal, inputs FROM app.intents WHERE id = %s", (intent_id,)) == [
        {"goal": "g", "inputs": {"tasks": 2}}
    ]

    started = ok_json(
        run_sisu(
            ["intent", "run", intent_id, "--trace-id", "t1", "--wait", "--timeout", "60", "--json"],
            sisu_env,
        )
    )
    assert started["status"] == "succeeded"
    assert started["runId"] == started["workflowId"] == started["intentId"] == intent_id
    assert run_status(db_url, intent_id) == "succeeded"

    view = ok_json(run_sisu(["run", "show", intent_id, "--json"], sisu_env))
    assert_runview_shape(view)
    assert view["runId"] == intent_id
    assert view["traceId"] == "t1"
    assert view["status"] == "succeeded"
    assert [(s["stepId"], s["attempt"], s["phase"]) for s in view["steps"]] == [
        (step, 1, "succeeded") for step in STEP_IDS
    ]
    assert rows(db_url, "SELECT count(*)::int AS n FROM app.mock_receipts WHERE run_id = %s",
                (intent_id,)) == [{"n": 2}]  # fmt: skip

    # Which compiler planned it, and the call it made, recorded with the run.
    assert view["compiler"] == {
        "name": "builtin",
        "model": None,
        "requests": 1,
        "inputTokens": None,
        "outputTokens": None,
    }
    [call] = ok_json(run_sisu(["run", "calls", intent_id, "--json"], sisu_env))
    assert (call["stepId"], call["compiler"], call["model"], call["attempt"]) == (
        "CompileST", "builtin", None, 1,
    )  # fmt: skip
    assert call["request"]["goal"] == "g"
    assert call["response"]["planId"]
    assert call["error"] is None
    assert call["latencyMs"] >= 0
    assert rows(db_url, "SELECT id, compiler, attempt FROM app.opencode_calls") == [
        {"id": call["id"], "compiler": "builtin", "attempt": 1}
    ]
    code, shown = pty_run(["run", "calls", intent_id], sisu_env)
    assert code == 0
    assert "CompileST" in shown and "builtin" in shown

    listed = ok_json(run_sisu(["run", "list", "--json"], sisu_env))
    assert listed["next"] is None
    assert [(r["runId"], r["status"]) for r in listed["items"]] == [(intent_id, "succeeded")]

    # Running it again is the same run.
    again = ok_json(run_sisu(["intent", "run", intent_id, "--json"], sisu_env))
    assert again["runId"] == intent_id
    assert again["status"] == "succeeded"
    assert scalar(db_url, "SELECT count(*) FROM dbos.workflow_status") == 1


def test_inputs_from_a_file(sisu_env: dict[str, str], db_url: str, tmp_path: Path) -> None:
    inputs = {"tasks": 4, "note": "from a file", "nested": {"a": [1, 2]}}
    path = tmp_path / "inputs.json"
    path.write_text(json.dumps(inputs))
    intent_id = create(sisu_env, "--inputs", f"@{path}")
    assert rows(db_url, "SELECT inputs FROM app.intents WHERE id = %s", (intent_id,)) == [
        {"inputs": inputs}
    ]


@pytest.mark.parametrize(
    "inputs",
    [
        pytest.param("[1]", id="array"),
        pytest.param("{bad", id="malformed"),
        pytest.param('"text"', id="string"),
        pytest.param("@/nonexistent/inputs.json", id="missing-file"),
    ],
)
def test_bad_inputs_exit_2_and_write_nothing(
    sisu_env: dict[str, str], db_url: str, inputs: str
) -> None:
    result = run_sisu(["intent", "create", "--goal", "g", "--inputs", inputs, "--json"], sisu_env)
    error_json(result, 2, "validation_error")
    assert intent_count(db_url) == 0


EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "intents"


def intent_row(url: str, intent_id: str) -> dict[str, Any]:
    [row] = rows(
        url, "SELECT goal, inputs, constraints FROM app.intents WHERE id = %s", (intent_id,)
    )
    return row


@pytest.mark.parametrize("name", ["ask", "hello", "flaky", "slow"])
def test_create_from_an_example_intent_file(
    sisu_env: dict[str, str], db_url: str, name: str
) -> None:
    path = EXAMPLES / f"{name}.json"
    result = run_sisu(["intent", "create", "--file", str(path), "--json"], sisu_env)
    created = ok_json(result)
    assert list(created) == ["intentId"]
    assert intent_row(db_url, created["intentId"]) == json.loads(path.read_text())
    assert intent_count(db_url) == 1


def test_create_from_stdin(sisu_env: dict[str, str], db_url: str) -> None:
    body = {"goal": "from stdin", "inputs": {"tasks": 3}, "constraints": {"x": 1}}
    proc = subprocess.run(
        [SISU, "intent", "create", "--file", "-", "--json"],
        input=json.dumps(body),
        env=sisu_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    created = ok_json(Result(proc.returncode, proc.stdout, proc.stderr))
    assert intent_row(db_url, created["intentId"]) == body


def test_flags_beside_file_replace_its_fields(sisu_env: dict[str, str], db_url: str) -> None:
    path = EXAMPLES / "slow.json"
    args = ["--goal", "other goal", "--inputs", '{"tasks": 1}']
    created = ok_json(
        run_sisu(["intent", "create", "--file", str(path), *args, "--json"], sisu_env)
    )
    assert intent_row(db_url, created["intentId"]) == {
        "goal": "other goal",
        "inputs": {"tasks": 1},  # replaced whole, not merged with the file's sleepMs
        "constraints": json.loads(path.read_text())["constraints"],
    }


@pytest.mark.parametrize(
    ("content", "field"),
    [
        pytest.param(None, "file", id="missing"),
        pytest.param("{bad", "file", id="not-json"),
        pytest.param('["goal"]', "file", id="not-an-object"),
        pytest.param('{"inputs": {}}', "goal", id="no-goal"),
        pytest.param('{"goal": "g", "input": {}}', "input", id="unknown-field"),
        pytest.param('{"goal": "g", "inputs": [1]}', "inputs", id="inputs-not-an-object"),
        pytest.param('{"goal": "g", "ref": "main"}', None, id="ref-without-repo"),
    ],
)
def test_a_bad_intent_file_exits_2_and_writes_nothing(
    sisu_env: dict[str, str], db_url: str, tmp_path: Path, content: str | None, field: str | None
) -> None:
    path = tmp_path / "intent.json"
    if content is not None:
        path.write_text(content)
    result = run_sisu(["intent", "create", "--file", str(path), "--json"], sisu_env)
    body = error_json(result, 2, "validation_error")
    assert body["details"][0]["field"] == field, body
    assert intent_count(db_url) == 0


def test_inputs_from_a_whole_intent_file_are_kept_with_a_hint(
    sisu_env: dict[str, str], db_url: str
) -> None:
    """`--inputs @ask.json` still means what it says (the file is the inputs), but the
    operator is pointed to --file on stderr: the file looked like a whole intent."""
    path = EXAMPLES / "ask.json"
    result = run_sisu(["intent", "create", "--goal", "g", "--inputs", f"@{path}"], sisu_env)
    assert result.exit_code == 0, result.stderr
    assert intent_row(db_url, result.stdout.strip())["inputs"] == json.loads(path.read_text())
    assert f"sisu intent create --file {path}" in result.stderr


def test_create_needs_a_goal_or_a_file(sisu_env: dict[str, str], db_url: str) -> None:
    body = error_json(run_sisu(["intent", "create", "--json"], sisu_env), 2, "validation_error")
    assert body["details"][0]["field"] == "goal"
    assert intent_count(db_url) == 0


def test_an_empty_goal_exits_2_and_writes_nothing(sisu_env: dict[str, str], db_url: str) -> None:
    result = run_sisu(["intent", "create", "--goal", "", "--json"], sisu_env)
    error_json(result, 2, "validation_error")
    assert intent_count(db_url) == 0


def test_an_empty_trace_id_exits_2_and_starts_nothing(
    sisu_env: dict[str, str], db_url: str
) -> None:
    intent_id = create(sisu_env)
    result = run_sisu(["intent", "run", intent_id, "--trace-id", "", "--json"], sisu_env)
    error_json(result, 2, "validation_error")
    assert scalar(db_url, "SELECT count(*) FROM app.runs") == 0
    assert scalar(db_url, "SELECT count(*) FROM dbos.workflow_status") == 0


def test_unknown_ids_exit_4(sisu_env: dict[str, str], db_url: str) -> None:
    error_json(run_sisu(["run", "show", "nope", "--json"], sisu_env), 4, "not_found")
    error_json(run_sisu(["run", "calls", "nope", "--json"], sisu_env), 4, "not_found")
    error_json(run_sisu(["intent", "run", "nope", "--json"], sisu_env), 4, "not_found")
    assert scalar(db_url, "SELECT count(*) FROM app.runs") == 0
    assert scalar(db_url, "SELECT count(*) FROM dbos.workflow_status") == 0


def test_watch_and_wait_in_a_terminal(
    sisu_env: dict[str, str], db_url: str, worker: WorkerProcess
) -> None:
    # `run watch` on a run that is still going: it holds ExecuteST open for 1.5 s.
    watched = create(sisu_env, "--inputs", '{"sleepMs": 1500}')
    assert ok_json(run_sisu(["intent", "run", watched, "--json"], sisu_env))["runId"] == watched
    assert run_status(db_url, watched) in {"queued", "running"}
    child = spawn_sisu(["run", "watch", watched, "--timeout", "60"], sisu_env, timeout=90)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, (child.exitstatus, child.signalstatus, child.before)
    assert run_status(db_url, watched) == "succeeded"

    # `intent run --wait` in a terminal, human output.
    waited = create(sisu_env, "--inputs", '{"sleepMs": 1500}')
    code, shown = pty_run(["intent", "run", waited, "--wait", "--timeout", "60"], sisu_env)
    assert code == 0, shown
    assert run_status(db_url, waited) == "succeeded"
    assert worker.alive()


def test_demo_json(sisu_env: dict[str, str], db_url: str) -> None:
    view = ok_json(run_sisu(["demo", "--json"], sisu_env, timeout=150))
    assert_runview_shape(view)
    assert view["status"] == "succeeded"
    assert view["traceId"] == "demo"
    assert [s["stepId"] for s in view["steps"]] == STEP_IDS
    assert run_status(db_url, view["runId"]) == "succeeded"
    # The demo's worker is gone by now, so this is read once, not waited for.
    assert rows(db_url, "SELECT status FROM dbos.workflow_status WHERE workflow_uuid = %s",
                (view["runId"],)) == [{"status": "SUCCESS"}]  # fmt: skip


def test_an_unexpected_error_under_json_prints_the_envelope(
    sisu_env: dict[str, str], db_url: str
) -> None:
    """A failure sisu did not foresee (here a table gone from under it) is still one line on
    stderr and, under --json, the error envelope on stdout — never an empty stdout."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE app.runs RENAME TO runs_gone")
    result = run_sisu(["run", "list", "--json"], sisu_env)
    assert result.exit_code == 1, result.stderr
    assert result.json()["error"] == "internal_error"
    assert set(result.json()) == {"error", "message", "details"}
    assert len(result.stderr.splitlines()) == 1
