"""A worker killed -9 while its model request is in flight (the model server holds it), then
restarted with the same executor id: the run succeeds, and the server received the recorded
requests plus at most the one in flight at the kill — a checkpointed request is never paid for
twice."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.integration.test_llm_compiler import KEY, PLAN, llm_worker
from tests.integration.test_repo_tools_durable import (
    LIST,
    MODEL,
    READ,
    Probe,
    make_repo,
    repo_reader,
    steps,
)
from tests.support.cli import run_sisu, sisu_env_for
from tests.support.db import rows
from tests.support.fake_openai import (
    FakeOpenAI,
    FakeRequest,
    output_tool_name,
    tool_call_completion,
)
from tests.support.runs import fast_backend, start_intent, wait_run_done
from tests.support.workers import wait_worker_ready


def test_a_kill_during_a_model_request_repeats_at_most_that_request(
    db_url: str, tmp_path: Path
) -> None:
    # The first answer does not validate, so the model is asked a second time; the worker is
    # killed while that second request is held. The first, checkpointed, must not be re-sent.
    answers: Iterator[dict[str, Any]] = iter([{"files": []}, PLAN, PLAN])

    def respond(request: FakeRequest) -> dict[str, Any]:
        return tool_call_completion(output_tool_name(request), next(answers))

    with FakeOpenAI(respond=respond, api_key=KEY) as fake:
        arrived, release = fake.stall(2)
        first = llm_worker(db_url, tmp_path, fake)
        wait_worker_ready(db_url, first)
        with fast_backend(db_url) as b:
            run_id = start_intent(b, "plan while the worker dies")
        assert arrived.wait(60), "the model request never arrived"
        first.kill()
        release.set()
        second = first.restart()
        try:
            wait_run_done(db_url, run_id, worker=second, timeout=90)
        finally:
            second.stop()
        recorded = rows(db_url, "SELECT error FROM app.opencode_calls WHERE run_id = %s", (run_id,))
        assert recorded == [{"error": None}, {"error": None}]
        assert fake.chat_count == len(recorded) + 1  # the one in flight at the kill
    audit = run_sisu(["audit", "--json", "--run", run_id], sisu_env_for(db_url, tmp_path / "cli"))
    assert audit.exit_code == 0, audit.stdout


def test_a_recovered_run_gets_its_recorded_tool_answers_without_asking_git_again(
    db_url: str, tmp_path: Path
) -> None:
    # The probe is killed while its third model request is held, after two tool calls were
    # checkpointed; then the repository is deleted. The restarted probe can only finish if
    # those tool calls are replayed from their steps, not run again.
    repo, commit = make_repo(tmp_path)
    with FakeOpenAI(respond=repo_reader, api_key=KEY) as fake:
        arrived, release = fake.stall(3)
        probe = Probe(
            db_url, fake, {"goal": "greet", "repo": str(repo), "commit": commit},
            tmp_path / "probe.log",
        )  # fmt: skip
        first = probe.start()
        assert arrived.wait(60), "the third model request never arrived"
        first.kill()
        first.communicate()
        release.set()
        shutil.rmtree(repo)
        plan = probe.result(probe.start())
        assert plan["patch"]["files"] == PLAN["files"]
        recorded = rows(
            db_url, "SELECT error FROM app.opencode_calls WHERE run_id = %s", (probe.workflow_id,)
        )
        assert recorded == [{"error": None}] * 4
        assert fake.chat_count == len(recorded) + 1  # the one in flight at the kill
    assert steps(db_url, probe.workflow_id) == [MODEL, LIST, MODEL, READ, MODEL, READ, MODEL]
