"""The llm compiler on a real worker process: its model is an OpenAI-compatible server this test
starts on 127.0.0.1 (tests/support/fake_openai.py), reached by the real pydantic-ai client over real
HTTP. Every request the server received is one row of `app.opencode_calls`, with the model and
its tokens; the API key is in no table."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sisu.drills.processes import WorkerProcess
from tests.support.cli import run_sisu, sisu_env_for
from tests.support.db import rows
from tests.support.fake_openai import (
    FakeOpenAI,
    FakeRequest,
    output_tool_name,
    tool_call_completion,
)
from tests.support.runs import fast_backend, start_intent, wait_run_done, wait_run_status
from tests.support.workers import intent_worker, wait_worker_ready

KEY = "sk-sisu-test-7f3a9c"
PLAN = {
    "summary": "Write a greeting file.",
    "files": [{"path": "hello.txt", "content": "hello\n"}],
    "tests": ["hello_exists"],
    "testCommand": "test -f hello.txt",
    "tasks": ["announce", "archive"],
}


def plan_answer(request: FakeRequest) -> dict[str, Any]:
    return tool_call_completion(
        output_tool_name(request), PLAN, prompt_tokens=120, completion_tokens=30
    )


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(respond=plan_answer, api_key=KEY) as server:
        yield server


def compiler_worker(url: str, tmp_path: Path, compiler: str, env: dict[str, str]) -> WorkerProcess:
    """A real worker with `--compiler COMPILER`, started from a clean environment plus `env`."""
    return intent_worker(url, tmp_path, compiler, "--compiler", compiler, env=env).start()


def llm_worker(url: str, tmp_path: Path, fake: FakeOpenAI, **env: str) -> WorkerProcess:
    return compiler_worker(
        url,
        tmp_path,
        "llm",
        {
            "SISU_LLM_MODEL": "openai:fake-model",
            "SISU_LLM_BASE_URL": fake.base_url,
            "SISU_LLM_API_KEY": KEY,
            "SISU_STEP_BACKOFF_SECONDS": "0.05",
            **env,
        },
    )


def run_on(
    worker: WorkerProcess, url: str, goal: str, want: str = "succeeded", **intent: Any
) -> str:
    """One intent run on `worker` until its run is `want`; the worker is stopped afterwards."""
    try:
        wait_worker_ready(url, worker)
        with fast_backend(url) as b:
            run_id = start_intent(b, goal, **intent)
        if want == "succeeded":
            wait_run_done(url, run_id, worker=worker, timeout=60)
        else:
            wait_run_status(url, run_id, want, worker=worker, timeout=60)
    finally:
        worker.stop()
    return run_id


def calls(url: str, run_id: str) -> list[dict[str, Any]]:
    return rows(
        url,
        "SELECT compiler, model, step_id, input_tokens, output_tokens, error, response "
        "FROM app.opencode_calls WHERE run_id = %s ORDER BY id",
        (run_id,),
    )


def test_a_model_plans_the_run_and_every_request_is_recorded(
    db_url: str, tmp_path: Path, fake: FakeOpenAI
) -> None:
    worker = llm_worker(db_url, tmp_path, fake)
    run_id = run_on(worker, db_url, "greet the world", inputs={"who": "world"})

    recorded = calls(db_url, run_id)
    assert len(recorded) == fake.chat_count == 1
    [call] = recorded
    assert (call["compiler"], call["model"], call["step_id"]) == ("llm", "openai:fake-model",
                                                                 "CompileST")  # fmt: skip
    assert (call["input_tokens"], call["output_tokens"], call["error"]) == (120, 30, None)
    assert call["response"] is not None
    # The plan the model returned is what ran: its files, its tasks.
    [compile_output] = rows(
        db_url,
        "SELECT output FROM app.run_steps WHERE run_id = %s AND step_id = 'CompileST'",
        (run_id,),
    )
    plan = compile_output["output"]
    assert plan["patch"]["files"] == PLAN["files"]
    assert plan["testCommand"] == "test -f hello.txt"
    assert [t["taskKey"] for t in plan["tasks"]] == ["task-1", "task-2"]
    assert rows(
        db_url, "SELECT count(*)::int AS n FROM app.mock_receipts WHERE run_id = %s", (run_id,)
    ) == [{"n": 2}]
    assert (tmp_path / "home" / "workspaces" / run_id / "hello.txt").read_text() == "hello\n"
    # The prompt carried the goal and inputs; the key went only in the Authorization header.
    [request] = fake.chat_requests
    assert "greet the world" in json.dumps(request.body)
    assert request.authorization == f"Bearer {KEY}"
    dumped = rows(
        db_url,
        "SELECT count(*)::int AS n FROM app.opencode_calls "
        "WHERE request::text LIKE %(k)s OR response::text LIKE %(k)s",
        {"k": f"%{KEY}%"},
    )
    assert dumped == [{"n": 0}]
    like = {"k": f"%{KEY}%"}
    for table, columns in (
        ("dbos.operation_outputs", ("output", "error")),
        ("dbos.workflow_status", ("inputs", "output", "error")),
        ("app.runs", ("error::text",)),
        ("app.run_steps", ("output::text", "error::text")),
    ):
        where = " OR ".join(f"{c} LIKE %(k)s" for c in columns)
        assert rows(db_url, f"SELECT count(*)::int AS n FROM {table} WHERE {where}", like) == [
            {"n": 0}
        ], table
    assert KEY not in worker.log_path.read_text()
    view = run_sisu(["run", "show", run_id, "--json"], sisu_env_for(db_url, tmp_path / "cli"))
    assert view.json()["compiler"] == {
        "name": "llm",
        "model": "openai:fake-model",
        "requests": 1,
        "inputTokens": 120,
        "outputTokens": 30,
    }


def test_a_rate_limited_request_is_retried_and_each_attempt_recorded(
    db_url: str, tmp_path: Path, fake: FakeOpenAI
) -> None:
    fake.fail_first(1, 429)
    run_id = run_on(llm_worker(db_url, tmp_path, fake), db_url, "plan despite a rate limit")
    recorded = calls(db_url, run_id)
    assert fake.chat_count == len(recorded) == 2
    assert recorded[0]["error"]["code"] == "ModelRateLimitError"
    assert recorded[1]["error"] is None


def test_a_refused_key_fails_the_run_with_a_message_naming_the_fix(
    db_url: str, tmp_path: Path, fake: FakeOpenAI
) -> None:
    run_id = run_on(
        llm_worker(db_url, tmp_path, fake, SISU_LLM_API_KEY="sk-wrong"),
        db_url,
        "plan with a wrong key",
        want="failed",
    )
    [run] = rows(db_url, "SELECT error, next_action FROM app.runs WHERE id = %s", (run_id,))
    assert run["next_action"] is None
    assert run["error"]["step"] == "CompileST"
    assert "SISU_LLM_API_KEY" in run["error"]["message"]
    assert fake.chat_count == 1  # an authentication failure is not retried


def test_a_run_over_its_request_budget_stops_for_repair(
    db_url: str, tmp_path: Path, fake: FakeOpenAI
) -> None:
    # The first answer does not validate (no summary): the model is asked again, which the
    # budget of one request does not allow.
    answers: Iterator[dict[str, Any]] = iter([{"files": []}, PLAN])

    def respond(request: FakeRequest) -> dict[str, Any]:
        return tool_call_completion(output_tool_name(request), next(answers))

    fake.respond = respond
    run_id = run_on(
        llm_worker(db_url, tmp_path, fake),
        db_url,
        "plan within one request",
        constraints={"maxModelRequests": 1},
        want="failed",
    )
    [run] = rows(db_url, "SELECT error, next_action FROM app.runs WHERE id = %s", (run_id,))
    assert (run["error"]["code"], run["next_action"]) == ("budget_exceeded", "REPAIR")
    assert fake.chat_count == 1


def test_a_worker_asked_for_llm_without_a_model_exits_2_naming_the_variable(
    sisu_env: dict[str, str],
) -> None:
    result = run_sisu(["worker", "--compiler", "llm", "--admin-port", "0"], sisu_env)
    assert result.exit_code == 2, result.stderr
    assert "SISU_LLM_MODEL" in result.stderr.splitlines()[0]
    unknown = run_sisu(
        ["worker", "--compiler", "llm", "--admin-port", "0"],
        {**sisu_env, "SISU_LLM_MODEL": "nosuch:model"},
    )
    assert unknown.exit_code == 2
    assert len(unknown.stderr.splitlines()) == 1
    keyless = run_sisu(
        ["worker", "--compiler", "llm", "--admin-port", "0"],
        {**sisu_env, "SISU_LLM_MODEL": "anthropic:claude-sonnet-4-5", "ANTHROPIC_API_KEY": ""},
    )
    assert keyless.exit_code == 2
    assert "SISU_LLM_API_KEY" in keyless.stderr.splitlines()[0]
    assert "ANTHROPIC_API_KEY" in keyless.stderr.splitlines()[0]


def test_a_plan_with_a_question_waits_for_a_human(
    db_url: str, tmp_path: Path, fake: FakeOpenAI
) -> None:
    def respond(request: FakeRequest) -> dict[str, Any]:
        return tool_call_completion(
            output_tool_name(request), {**PLAN, "question": "Ship it to production?"}
        )

    fake.respond = respond
    env = sisu_env_for(db_url, tmp_path / "cli")
    worker = llm_worker(db_url, tmp_path, fake)
    try:
        wait_worker_ready(db_url, worker)
        with fast_backend(db_url) as b:
            run_id = start_intent(b, "ship it")
        wait_run_status(db_url, run_id, "waiting_input", worker=worker, timeout=60)
        [card] = rows(
            db_url,
            "SELECT inline FROM app.artifacts WHERE run_id = %s AND kind = 'question_card'",
            (run_id,),
        )
        assert card["inline"]["question"] == "Ship it to production?"
        answered = run_sisu(["run", "event", run_id, "--payload", '{"answer": "yes"}'], env)
        assert answered.exit_code == 0, answered.stderr
        wait_run_done(db_url, run_id, worker=worker, timeout=60)
    finally:
        worker.stop()
    assert fake.chat_count == 1
    audit = run_sisu(["audit", "--json", "--run", run_id], env)
    assert audit.exit_code == 0, audit.stdout


def replay_worker(url: str, tmp_path: Path, source: str) -> WorkerProcess:
    return compiler_worker(url, tmp_path, "replay", {"SISU_REPLAY_FROM": source})


def compile_output(url: str, run_id: str) -> dict[str, Any]:
    [row] = rows(
        url,
        "SELECT output FROM app.run_steps WHERE run_id = %s AND step_id = 'CompileST' "
        "AND phase = 'succeeded'",
        (run_id,),
    )
    output: dict[str, Any] = row["output"]
    return output


def test_replay_reproduces_a_run_offline_from_its_recorded_calls(
    db_url: str, tmp_path: Path
) -> None:
    env = sisu_env_for(db_url, tmp_path / "cli")
    with FakeOpenAI(respond=plan_answer, api_key=KEY) as fake:
        original = run_on(llm_worker(db_url, tmp_path, fake), db_url, "greet the world")
    exported = run_sisu(["run", "calls", original, "--json"], env)
    assert exported.exit_code == 0, exported.stderr
    calls_file = tmp_path / "calls.json"
    calls_file.write_text(exported.stdout)

    # The model server is gone: the replay serves the recorded responses, from the file and
    # from the run id alike.
    for source in (str(calls_file), original):
        again = run_on(replay_worker(db_url, tmp_path, source), db_url, "greet the world")
        replayed, first = compile_output(db_url, again), compile_output(db_url, original)
        assert {k: v for k, v in replayed.items() if k != "model"} == {
            **{k: v for k, v in first.items() if k != "model"},
            "compiler": "replay",
        }
        assert rows(
            db_url, "SELECT compiler, error FROM app.opencode_calls WHERE run_id = %s", (again,)
        ) == [{"compiler": "replay", "error": None}]


def test_replay_without_a_usable_source_exits_2_naming_the_variable(
    sisu_env: dict[str, str],
) -> None:
    missing = run_sisu(["worker", "--compiler", "replay", "--admin-port", "0"], sisu_env)
    assert missing.exit_code == 2
    assert "SISU_REPLAY_FROM" in missing.stderr.splitlines()[0]
    unknown_run = run_sisu(
        ["worker", "--compiler", "replay", "--admin-port", "0"],
        {**sisu_env, "SISU_REPLAY_FROM": "no-such-run"},
    )
    assert unknown_run.exit_code == 2
    assert "SISU_REPLAY_FROM" in unknown_run.stderr.splitlines()[0]


def test_doctor_checks_that_the_configured_model_answers(
    sisu_env: dict[str, str], fake: FakeOpenAI
) -> None:
    from tests.support.serve import free_port

    def model_finding(**env: str) -> dict[str, Any]:
        llm_env = {**sisu_env, "SISU_COMPILER": "llm", "SISU_LLM_API_KEY": KEY, **env}
        result = run_sisu(["doctor", "--json"], llm_env)
        [found] = [f for f in result.json()["findings"] if f["name"] == "model"]
        return dict(found)

    ok = model_finding(SISU_LLM_MODEL="openai:fake-model", SISU_LLM_BASE_URL=fake.base_url)
    assert (ok["ok"], ok["fix"]) == (True, None)
    unknown = model_finding(SISU_LLM_MODEL="openai:nosuch", SISU_LLM_BASE_URL=fake.base_url)
    assert unknown["ok"] is False
    assert unknown["fix"] == "set SISU_LLM_MODEL to one of: fake-model"
    down = model_finding(
        SISU_LLM_MODEL="openai:fake-model", SISU_LLM_BASE_URL=f"http://127.0.0.1:{free_port()}/v1"
    )
    assert down["ok"] is False
    assert "SISU_LLM_BASE_URL" in down["fix"]
    unset = model_finding()
    assert (unset["ok"], unset["fix"]) == (False, "set SISU_LLM_MODEL=provider:name")
    # The key is never printed.
    assert KEY not in json.dumps([ok, unknown, down, unset])


def test_doctor_checks_each_provider_as_far_as_it_can(
    sisu_env: dict[str, str], fake: FakeOpenAI, tmp_path: Path
) -> None:
    # No key or credentials of this machine may count: the provider's own variables are blank.
    bare = {
        **sisu_env,
        "SISU_COMPILER": "llm",
        "HOME": str(tmp_path / "nohome"),
        "NO_GCE_CHECK": "True",
        **dict.fromkeys(
            ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GOOGLE_API_KEY", "GEMINI_API_KEY",
             "GOOGLE_APPLICATION_CREDENTIALS"),
            "",
        ),
    }  # fmt: skip

    def model_finding(**env: str) -> dict[str, Any]:
        result = run_sisu(["doctor", "--json"], {**bare, **env})
        [found] = [f for f in result.json()["findings"] if f["name"] == "model"]
        assert KEY not in result.stdout + result.stderr
        return dict(found)

    # anthropic: its model list, from the server at SISU_LLM_BASE_URL (Anthropic's SDK adds /v1).
    anthropic_at = f"http://127.0.0.1:{fake.port}"
    ok = model_finding(
        SISU_LLM_MODEL="anthropic:fake-model", SISU_LLM_BASE_URL=anthropic_at,
        ANTHROPIC_API_KEY=KEY,
    )  # fmt: skip
    assert (ok["ok"], ok["fix"]) == (True, None)
    unknown = model_finding(
        SISU_LLM_MODEL="anthropic:nosuch", SISU_LLM_BASE_URL=anthropic_at, SISU_LLM_API_KEY=KEY
    )
    assert (unknown["ok"], unknown["fix"]) == (False, "set SISU_LLM_MODEL to one of: fake-model")
    assert fake.requests[-1].path.startswith("/v1/models")
    # google: only that a key is there (Google is not asked).
    gemini = model_finding(SISU_LLM_MODEL="google-gla:gemini-2.5-flash", GEMINI_API_KEY=KEY)
    assert gemini["ok"] is True
    assert "GEMINI_API_KEY" in gemini["symptom"]
    # No key at all: the finding names the variable.
    for model in ("anthropic:fake-model", "google-gla:gemini-2.5-flash", "openai:gpt-4.1"):
        missing = model_finding(SISU_LLM_MODEL=model)
        assert (missing["ok"], missing["fix"]) == (False, "set SISU_LLM_API_KEY"), model
    vertex = model_finding(SISU_LLM_MODEL="google-vertex:gemini-2.5-flash")
    assert vertex["ok"] is False
    assert "SISU_LLM_API_KEY" in vertex["fix"]
    assert "GOOGLE_APPLICATION_CREDENTIALS" in vertex["fix"]
    express = model_finding(SISU_LLM_MODEL="google-vertex:gemini-2.5-flash", SISU_LLM_API_KEY=KEY)
    assert express["ok"] is True


def test_the_replay_example_runs_without_a_model_or_a_key(
    sisu_env: dict[str, str], db_url: str, tmp_path: Path
) -> None:
    """examples/replay/run.sh, as a new user runs it: a replay worker from the example's
    calls.json, the example's intent, `intent run --wait`. Nothing listens for a model."""
    import subprocess

    from tests.support.cli import SISU

    root = Path(__file__).resolve().parents[2]
    env = {
        **sisu_env,
        "PATH": f"{Path(SISU).parent}:{sisu_env.get('PATH', '')}",
        **dict.fromkeys(("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GOOGLE_API_KEY"), ""),
    }
    done = subprocess.run(
        ["bash", str(root / "examples" / "replay" / "run.sh")],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    [run] = rows(db_url, "SELECT id, status FROM app.runs")
    assert run["status"] == "succeeded"
    assert rows(
        db_url, "SELECT compiler, model, error FROM app.opencode_calls WHERE run_id = %s",
        (run["id"],),
    ) == [{"compiler": "replay", "model": "replay:calls.json", "error": None}]  # fmt: skip
    recorded = json.loads((root / "examples" / "replay" / "calls.json").read_text())
    plan = compile_output(db_url, run["id"])
    [answer] = [r["response"] for r in recorded]
    [planned] = [p["args"] for p in answer["parts"] if p["part_kind"] == "tool-call"]
    planned = json.loads(planned) if isinstance(planned, str) else planned
    assert plan["patch"]["files"] == planned["files"]
    workspace = Path(sisu_env["SISU_HOME"]) / "workspaces" / run["id"]
    assert (workspace / "hello.txt").read_text() == planned["files"][0]["content"]
    assert rows(
        db_url, "SELECT count(*)::int AS n FROM app.mock_receipts WHERE run_id = %s", (run["id"],)
    ) == [{"n": len(planned["tasks"])}]
