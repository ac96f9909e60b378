"""Intents on a real git repository, with a real worker: the commit is pinned at create time,
the workspace is a checkout of it with the plan's files written over it, the diff is an artifact
that `git apply` takes, and the user's repository is never touched. Scripted plans and the
approval gate ride the same path."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from sisu.audit import oracles
from sisu.contracts.runs import EventRequest, IntentCreate, RunRequest
from sisu.errors import NotFound, ValidationFailed
from sisu.service import human, intents, views
from sisu.service.backend import Backend
from tests.support.db import rows, scalar
from tests.support.runs import wait_run_done, wait_run_status, wait_workflow_status
from tests.support.workers import running_worker, worker_home


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout


def make_repo(path: Path) -> Path:
    """A repository with a failing test: `sh test.sh` checks that calc.sh prints 4."""
    path.mkdir()
    git(path, "init", "--quiet", "--initial-branch=main")
    git(path, "config", "user.email", "t@example.com")
    git(path, "config", "user.name", "t")
    (path / "calc.sh").write_text("echo $((2 + 1))\n")
    (path / "test.sh").write_text('test "$(sh calc.sh)" = 4\n')
    (path / "README").write_text("a tiny repository\nwith two lines\n")
    git(path, "add", ".")
    git(path, "commit", "--quiet", "-m", "initial")
    return path


FIX = [
    {"path": "calc.sh", "content": "echo $((2 + 2))\n"},
    {"path": "docs/NOTES.md", "content": "fixed the sum\nno newline at the end"},
]


def intent_count(url: str) -> int:
    return int(scalar(url, "SELECT count(*) FROM app.intents"))


@pytest.mark.parametrize(
    ("repo", "ref", "field"),
    [
        ("missing", None, "repo"),
        ("plain", None, "repo"),
        ("repo", "no-such-branch", "ref"),
        ("repo", "--upload-pack=touch", "ref"),
    ],
)
def test_a_repo_or_ref_that_is_not_one_is_refused_with_nothing_written(
    backend: Backend, db_url: str, tmp_path: Path, repo: str, ref: str | None, field: str
) -> None:
    make_repo(tmp_path / "repo")
    (tmp_path / "plain").mkdir()
    before = intent_count(db_url)
    with pytest.raises(ValidationFailed) as caught:
        intents.create_intent(backend, IntentCreate(goal="g", repo=str(tmp_path / repo), ref=ref))
    assert caught.value.details[0]["field"] == field
    assert intent_count(db_url) == before


@pytest.mark.parametrize(
    "body",
    [
        {"goal": "g", "ref": "main"},  # a ref needs a repo
        {"goal": "g", "inputs": {"files": [{"path": "a"}]}},
        {"goal": "g", "inputs": {"files": "a"}},
        {"goal": "g", "inputs": {"testCommand": 3}},
        {"goal": "g", "constraints": {"requireApproval": "yes"}},
    ],
)
def test_malformed_scripted_plans_and_gates_are_refused(body: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        IntentCreate.model_validate(body)


def test_a_run_on_a_repo_pins_its_commit_and_its_patch_applies_there(
    backend: Backend, db_url: str, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "repo")
    pinned = git(repo, "rev-parse", "HEAD").strip()
    created = intents.create_intent(
        backend,
        IntentCreate(goal="fix the sum", repo=str(repo), inputs={"files": FIX}),
    )
    # The branch moves after the intent is created: the run still works from the pinned commit.
    (repo / "calc.sh").write_text("echo moved\n")
    git(repo, "commit", "--quiet", "-am", "moved on")
    status_before = git(repo, "status", "--porcelain")
    head_before = git(repo, "rev-parse", "HEAD")
    [intent] = rows(
        db_url, "SELECT repo, ref, commit_sha FROM app.intents WHERE id = %s", (created.intent_id,)
    )
    assert intent == {"repo": str(repo), "ref": "HEAD", "commit_sha": pinned}

    with running_worker(db_url, tmp_path) as worker:
        intents.start_run(backend, created.intent_id, RunRequest())
        wait_run_done(db_url, created.intent_id, worker=worker)

    workspace = worker_home(tmp_path) / "workspaces" / created.intent_id
    assert (workspace / "calc.sh").read_text() == "echo $((2 + 2))\n"
    assert (workspace / "README").read_text() == "a tiny repository\nwith two lines\n"
    assert git(workspace, "rev-parse", "HEAD").strip() == pinned

    # The user's repository is exactly as it was.
    assert git(repo, "status", "--porcelain") == status_before
    assert git(repo, "rev-parse", "HEAD") == head_before
    assert (repo / "calc.sh").read_text() == "echo moved\n"

    diff = views.run_patch(backend, created.intent_id)
    target = tmp_path / "target"
    subprocess.run(["git", "clone", "--quiet", str(repo), str(target)], check=True)
    git(target, "checkout", "--quiet", "--detach", pinned)
    subprocess.run(["git", "-C", str(target), "apply", "-"], input=diff, text=True, check=True)
    assert (target / "calc.sh").read_text() == "echo $((2 + 2))\n"
    assert (target / "docs/NOTES.md").read_text() == "fixed the sum\nno newline at the end"

    [patch] = rows(
        db_url,
        "SELECT inline, sha256 FROM app.artifacts WHERE run_id = %s AND kind = 'patch'",
        (created.intent_id,),
    )
    assert patch["inline"]["stat"] == {"files": 2, "insertions": 3, "deletions": 1}
    assert patch["inline"]["source"] == {"repo": str(repo), "commit": pinned}


def test_a_run_without_a_repo_has_a_patch_of_new_files(
    backend: Backend, db_url: str, tmp_path: Path
) -> None:
    created = intents.create_intent(backend, IntentCreate(goal="no repo"))
    with pytest.raises(NotFound):
        views.run_patch(backend, created.intent_id)  # no run yet
    with running_worker(db_url, tmp_path) as worker:
        intents.start_run(backend, created.intent_id, RunRequest())
        wait_run_done(db_url, created.intent_id, worker=worker)
    diff = views.run_patch(backend, created.intent_id)
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "--quiet")
    subprocess.run(["git", "-C", str(empty), "apply", "-"], input=diff, text=True, check=True)
    assert sorted(p.name for p in empty.iterdir() if p.name != ".git") == [
        "PLAN.md",
        "intent.json",
    ]


def test_the_approval_gate_waits_then_approves_or_rejects(
    backend: Backend, db_url: str, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "repo")
    gate = {"requireApproval": True}
    approved, rejected = (
        intents.create_intent(
            backend,
            IntentCreate(goal=goal, repo=str(repo), inputs={"files": FIX}, constraints=gate),
        ).intent_id
        for goal in ("approve me", "reject me")
    )
    with running_worker(db_url, tmp_path) as worker:
        for run_id in (approved, rejected):
            intents.start_run(backend, run_id, RunRequest())
            wait_run_status(db_url, run_id, "waiting_input", worker=worker)
        [card] = rows(
            db_url,
            "SELECT inline FROM app.artifacts WHERE run_id = %s AND kind = 'question_card'",
            (approved,),
        )
        assert card["inline"]["eventType"] == "approval"
        assert card["inline"]["diffStat"] == {"files": 2, "insertions": 3, "deletions": 1}
        # An answer of the wrong type is refused and changes nothing.
        with pytest.raises(ValidationFailed):
            human.send_event(
                backend, approved, EventRequest(type="input", payload={"answer": "ok"})
            )
        assert scalar(db_url, "SELECT status FROM app.runs WHERE id = %s", (approved,)) == (
            "waiting_input"
        )
        human.send_event(
            backend, approved, EventRequest(type="approval", payload={"approved": True})
        )
        human.send_event(
            backend,
            rejected,
            EventRequest(type="approval", payload={"approved": False, "reason": "not today"}),
        )
        wait_run_done(db_url, approved, worker=worker)
        wait_run_status(db_url, rejected, "canceled", worker=worker)
        wait_workflow_status(db_url, rejected, "SUCCESS")

    [run] = rows(db_url, "SELECT status, error FROM app.runs WHERE id = %s", (rejected,))
    assert run["error"]["code"] == "rejected"
    assert run["error"]["message"] == "not today"
    executed = rows(
        db_url,
        "SELECT step_id FROM app.run_steps WHERE run_id = %s AND step_id = 'ExecuteST'",
        (rejected,),
    )
    assert executed == []
    report = oracles.run(db_url, run_ids=[approved, rejected])
    assert report.ok, [c for c in report.checks if not c.ok]
