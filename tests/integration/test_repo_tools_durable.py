"""The repository tools inside a real DBOS workflow (tests/support/repo_tools_probe.py, a
subprocess) with the real pydantic-ai client talking to the fake OpenAI server over HTTP: the
model lists and reads the repository at the request's commit, each tool call is a DBOS step
between the model requests, and a refused path reaches the model as a tool result, not a crash."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.integration.test_llm_compiler import KEY, PLAN
from tests.support.db import rows
from tests.support.fake_openai import (
    FakeOpenAI,
    FakeRequest,
    output_tool_name,
    tool_call_completion,
)

ROOT = Path(__file__).resolve().parents[2]
# The model's moves, one per request: what it asks the tools, then its plan.
MOVES: list[tuple[str, dict[str, Any]]] = [
    ("list_files", {}),
    ("read_file", {"path": "README.md"}),
    ("read_file", {"path": "../secret.txt"}),
]


def tool_messages(request: FakeRequest) -> list[dict[str, Any]]:
    return [m for m in request.body["messages"] if m.get("role") == "tool"]


def repo_reader(request: FakeRequest) -> dict[str, Any]:
    """The fake model: one tool call per request, in MOVES' order, then the plan."""
    done = len(tool_messages(request))
    if done < len(MOVES):
        name, args = MOVES[done]
        return tool_call_completion(name, args)
    return tool_call_completion(output_tool_name(request), PLAN)


def make_repo(root: Path) -> tuple[Path, str]:
    repo = root / "repo"
    repo.mkdir(parents=True)

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
        )
        return done.stdout.strip()

    git("init", "-q")
    (repo / "README.md").write_text("# the service\nIt greets.\n")
    (repo / "src").mkdir()
    (repo / "src" / "main.py").write_text("print('hi')\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    return repo, git("rev-parse", "HEAD")


@dataclass
class Probe:
    """One run of tests/support/repo_tools_probe.py; `start()` again after a kill to recover."""

    url: str
    fake: FakeOpenAI
    request: dict[str, Any]
    log: Path
    executor_id: str = ""
    workflow_id: str = ""

    def __post_init__(self) -> None:
        self.executor_id = self.executor_id or f"probe-{uuid.uuid4().hex[:8]}"
        self.workflow_id = self.workflow_id or f"wf-{uuid.uuid4().hex[:8]}"

    def start(self) -> subprocess.Popen[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SISU_", "DBOS__"))}
        args = [self.url, self.fake.base_url, KEY, self.executor_id, self.workflow_id]
        with self.log.open("a") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "tests.support.repo_tools_probe", *args,
                 json.dumps(self.request)],
                cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log, text=True,
            )  # fmt: skip

    def result(self, proc: subprocess.Popen[str]) -> dict[str, Any]:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, self.log.read_text()[-3000:]
        plan: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return plan


def steps(url: str, workflow_id: str) -> list[str]:
    """The workflow's DBOS steps that the compiler's agent made, in order."""
    return [
        r["function_name"]
        for r in rows(
            url,
            "SELECT function_name FROM dbos.operation_outputs WHERE workflow_uuid = %s "
            "AND function_name LIKE 'sisu_compiler__%%' ORDER BY function_id",
            (workflow_id,),
        )
    ]


MODEL, LIST, READ = (
    "sisu_compiler__model.request",
    "sisu_compiler__repo.list_files",
    "sisu_compiler__repo.read_file",
)


def test_the_model_reads_the_repository_through_durable_tool_steps(
    db_url: str, tmp_path: Path
) -> None:
    repo, commit = make_repo(tmp_path)
    with FakeOpenAI(respond=repo_reader, api_key=KEY) as fake:
        probe = Probe(
            db_url, fake, {"goal": "greet", "repo": str(repo), "commit": commit},
            tmp_path / "probe.log",
        )  # fmt: skip
        plan = probe.result(probe.start())
        sent = fake.chat_requests
    assert plan["patch"]["files"] == PLAN["files"]
    assert [t["function"]["name"] for t in sent[0].body["tools"]][:2] == [
        "list_files",
        "read_file",
    ]
    assert commit in sent[0].body["messages"][-1]["content"]  # the prompt names the commit
    # What each tool answered, as the model received it.
    answers = [json.loads(tool_messages(r)[-1]["content"]) for r in sent[1:]]
    assert answers[0]["files"] == [
        {"path": "README.md", "size": 25},
        {"path": "src/main.py", "size": 12},
    ]
    assert answers[1]["content"] == "# the service\nIt greets.\n"
    assert answers[2]["error"] == "path_refused"
    # Every tool call is a step of the run's workflow, between the model requests.
    assert steps(db_url, probe.workflow_id) == [MODEL, LIST, MODEL, READ, MODEL, READ, MODEL]
    # The model requests are the recorded calls; the tool calls are inside their messages.
    recorded = rows(
        db_url,
        "SELECT model, error FROM app.opencode_calls WHERE run_id = %s ORDER BY id",
        (probe.workflow_id,),
    )
    assert (
        recorded
        == [{"model": "openai:fake-model", "error": None}] * 4
        == [{"model": "openai:fake-model", "error": None}] * len(sent)
    )


def test_a_request_without_a_repository_offers_no_tool(db_url: str, tmp_path: Path) -> None:
    def plan(request: FakeRequest) -> dict[str, Any]:
        return tool_call_completion(output_tool_name(request), PLAN)

    with FakeOpenAI(respond=plan, api_key=KEY) as fake:
        probe = Probe(db_url, fake, {"goal": "greet"}, tmp_path / "probe.log")
        assert probe.result(probe.start())["patch"]["files"] == PLAN["files"]
        [sent] = fake.chat_requests
    assert [t["function"]["name"] for t in sent.body["tools"]] == [output_tool_name(sent)]
    assert steps(db_url, probe.workflow_id) == [MODEL]


def test_a_worker_plans_a_repository_intent_reading_the_repository(
    db_url: str, tmp_path: Path
) -> None:
    """The whole path: `sisu intent create --repo` pins the commit, a real `--compiler llm`
    worker's model reads the repository through the tools, and the run succeeds."""
    from tests.integration.test_llm_compiler import llm_worker
    from tests.support.cli import run_sisu, sisu_env_for
    from tests.support.workers import wait_worker_ready

    repo, commit = make_repo(tmp_path)
    env = sisu_env_for(db_url, tmp_path / "cli")
    with FakeOpenAI(respond=repo_reader, api_key=KEY) as fake:
        worker = llm_worker(db_url, tmp_path, fake)
        try:
            wait_worker_ready(db_url, worker)
            created = run_sisu(["intent", "create", "--goal", "greet", "--repo", str(repo)], env)
            assert created.exit_code == 0, created.stderr
            run_id = created.stdout.strip()
            ran = run_sisu(["intent", "run", run_id, "--wait", "--timeout", "90"], env)
            assert ran.exit_code == 0, ran.stderr + worker.log_tail()
        finally:
            worker.stop()
        sent = fake.chat_requests
    assert commit in sent[0].body["messages"][-1]["content"]
    answers = [json.loads(tool_messages(r)[-1]["content"]) for r in sent[1:]]
    assert answers[1]["content"] == "# the service\nIt greets.\n"
    assert answers[2]["error"] == "path_refused"
    assert steps(db_url, run_id) == [MODEL, LIST, MODEL, READ, MODEL, READ, MODEL]
    assert rows(
        db_url, "SELECT count(*)::int AS n FROM app.opencode_calls WHERE run_id = %s", (run_id,)
    ) == [{"n": len(sent)}]
    # The user's repository was only read.
    assert subprocess.run(
        ["git", "-C", str(repo), "status", "--porcelain"], capture_output=True, text=True,
        check=True,
    ).stdout == ""  # fmt: skip
