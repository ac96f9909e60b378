"""The llm compiler's repository tools, driven by a pydantic-ai FunctionModel against a git
repository made here: they read the commit (not the working tree, which they never touch),
refuse paths outside the repository as tool results the model sees, cap what they return, and
are offered only when the run has a repository."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic_ai.messages import (
    ModelMessage,
    ModelResponse,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel

from sisu.workflow.steps.errors import StepError
from sisu.workflow.steps.llm_compiler import LlmCompiler
from sisu.workflow.steps.replay_compiler import recorded_repo
from sisu.workflow.steps.repo_tools import MAX_ENTRIES, MAX_FILE_BYTES, RepoAt, repo_for


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, str]:
    """A repository with text, a large file, a binary file and a wide directory, committed;
    then its working tree changed without a commit (the tools must not see that)."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    (root / "src").mkdir()
    (root / "src" / "app.py").write_text("print('hello')\n")
    (root / "README.md").write_text("# demo\n")
    (root / "big.txt").write_text("é" * MAX_FILE_BYTES)  # twice the cap in bytes
    (root / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00binary")
    (root / "wide").mkdir()
    for i in range(MAX_ENTRIES + 5):
        (root / "wide" / f"f{i:04}.txt").write_text("x")
    git(root, "add", ".")
    git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    commit = git(root, "rev-parse", "HEAD").strip()
    (root / "README.md").write_text("uncommitted\n")
    (root / "new.txt").write_text("untracked\n")
    return root, commit


def calls_then_plan(*calls: tuple[str, dict[str, Any]]) -> Callable[..., ModelResponse]:
    """A model that makes `calls` (one tool call each) in turn, then returns a plan."""

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        made = sum(isinstance(m, ModelResponse) for m in messages)
        if made < len(calls) and info.function_tools:
            name, args = calls[made]
            return ModelResponse(parts=[ToolCallPart(name, args)])
        return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, {"summary": "ok"})])

    return respond


def compiler() -> LlmCompiler:
    # The agent sisu runs; its model is replaced per test (nothing is recorded outside a run).
    return LlmCompiler(
        FunctionModel(calls_then_plan()), "unused", name="llm", label="t", max_attempts=1,
        backoff=0,
    )  # fmt: skip


def tool_results(
    deps: Any, *calls: tuple[str, dict[str, Any]]
) -> tuple[list[Any], list[str], list[str]]:
    """Run the agent with `deps`; the tool results the model got, the tool names it was offered
    on its first request, and what it was told."""
    offered: list[str] = []

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if not offered:
            offered.extend(t.name for t in info.function_tools)
        return calls_then_plan(*calls)(messages, info)

    agent = compiler().agent
    with agent.override(model=FunctionModel(respond)):
        result = agent.run_sync("{}", deps=deps)
    parts = [p for m in result.all_messages() for p in m.parts]
    returns = [p.content for p in parts if isinstance(p, ToolReturnPart) and p.tool_name in (
        "list_files", "read_file")]  # fmt: skip
    said = [str(getattr(m, "instructions", "")) for m in result.all_messages()]
    return returns, offered, said


def test_the_model_lists_and_reads_the_commit_not_the_working_tree(
    repo: tuple[Path, str],
) -> None:
    root, commit = repo
    returns, offered, said = tool_results(
        RepoAt(str(root), commit),
        ("list_files", {"path": "src"}),
        ("read_file", {"path": "README.md"}),
        ("read_file", {"path": "./src/../src/app.py"}),
    )
    assert offered == ["list_files", "read_file"]
    assert any("list_files and read_file read that commit" in s for s in said)
    assert returns[0] == {"path": "src", "files": [{"path": "src/app.py", "size": 15}]}
    assert returns[1] == {"path": "README.md", "size": 7, "content": "# demo\n"}
    # `..` is refused even when it would land inside: the name alone is checked.
    assert returns[2]["error"] == "path_refused"
    # The working tree is untouched: the tools read git's objects only.
    assert (root / "README.md").read_text() == "uncommitted\n"
    assert "new.txt" in git(root, "status", "--porcelain")


@pytest.mark.parametrize(
    ("tool", "path", "error"),
    [
        ("read_file", "../outside.txt", "path_refused"),
        ("read_file", "/etc/passwd", "path_refused"),
        ("list_files", "..", "path_refused"),
        ("list_files", "src/../../x", "path_refused"),
        ("read_file", "--output=/tmp/x", "path_refused"),
        ("read_file", "new.txt", "not_found"),  # untracked: not in the commit
        ("list_files", "nosuch", "not_found"),
        ("read_file", "src", "is_a_directory"),
        ("read_file", "", "is_a_directory"),
    ],
)
def test_a_refused_path_comes_back_to_the_model_as_a_tool_error(
    repo: tuple[Path, str], tool: str, path: str, error: str
) -> None:
    root, commit = repo
    # The model asks twice: neither crashes the run, and the run still returns its plan.
    returns, _, _ = tool_results(
        RepoAt(str(root), commit), (tool, {"path": path}), (tool, {"path": path})
    )
    assert [r["error"] for r in returns] == [error, error]


def test_answers_are_capped_cut_files_say_so_and_binary_files_are_named(
    repo: tuple[Path, str],
) -> None:
    root, commit = repo
    returns, _, _ = tool_results(
        RepoAt(str(root), commit),
        ("list_files", {}),
        ("read_file", {"path": "big.txt"}),
        ("read_file", {"path": "logo.png"}),
    )
    listing, big, logo = returns
    assert len(listing["files"]) == MAX_ENTRIES
    assert "narrower path" in listing["truncated"]
    assert big["size"] == 2 * MAX_FILE_BYTES
    assert big["content"] == "é" * (MAX_FILE_BYTES // 2)  # whole characters only
    assert big["truncated"] == f"the first {MAX_FILE_BYTES} of {2 * MAX_FILE_BYTES} bytes"
    assert logo == {"path": "logo.png", "size": 17, "binary": True}


def test_without_a_repository_no_tool_is_offered() -> None:
    returns, offered, said = tool_results(None, ("list_files", {}))
    assert (returns, offered) == ([], [])
    assert not any("list_files" in s for s in said)


def test_a_request_names_its_repository_only_with_a_resolved_commit(tmp_path: Path) -> None:
    sha = "a" * 40
    assert repo_for({"goal": "g"}) is None
    assert repo_for({"goal": "g", "repo": None, "commit": None}) is None
    assert repo_for({"repo": str(tmp_path), "commit": sha}) == RepoAt(str(tmp_path), sha)
    with pytest.raises(StepError):
        repo_for({"repo": str(tmp_path), "commit": "main"})


def test_a_replay_answers_the_tools_from_the_recording_without_the_repository(
    repo: tuple[Path, str],
) -> None:
    root, commit = repo
    asked = (("list_files", {"path": "src"}), ("read_file", {"path": "src/app.py"}))
    model = calls_then_plan(*asked)
    agent = compiler().agent
    with agent.override(model=FunctionModel(model)):
        original = agent.run_sync("{}", deps=RepoAt(str(root), commit))
    # As `sisu run calls --json` exports them: each request holds the messages sent so far.
    history = json.loads(original.all_messages_json())
    calls = [
        {"request": history[:i], "response": m}
        for i, m in enumerate(history)
        if m["kind"] == "response"
    ]
    recording = recorded_repo("calls.json", calls)
    assert recording is not None
    returns, _, _ = tool_results(recording, *asked, ("read_file", {"path": "README.md"}))
    first, _, _ = tool_results(RepoAt(str(root), commit), *asked)
    assert returns[:2] == first
    assert returns[2]["error"] == "not_recorded"
