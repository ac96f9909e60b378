"""OpenTelemetry traces (issue 16): a real `sisu worker` with OTEL_EXPORTER_OTLP_ENDPOINT exports
DBOS's workflow and step spans over OTLP/HTTP to a receiver the test starts on 127.0.0.1. One run
is one trace: every span of a run carries the run's trace id (its id, as a W3C trace id), runs
have different ones, and step spans name the run, the step, the attempt (as `app.run_steps`
numbers it) and the intent's traceId. A worker killed -9 and started again goes on in the same
trace. Without the variable, nothing is exported."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sisu import names, tracing
from sisu.contracts.runs import EventRequest
from sisu.drills.processes import WorkerProcess
from sisu.service import human, repair
from tests.support.cli import FAST_BACKOFF
from tests.support.db import rows
from tests.support.fake_openai import (
    FakeOpenAI,
    FakeRequest,
    output_tool_name,
    tool_call_completion,
)
from tests.support.otlp_receiver import OtlpReceiver, Span
from tests.support.runs import (
    ANSWER,
    ASK_GOAL,
    fast_backend,
    start_intent,
    wait_run_done,
    wait_run_status,
    wait_workflow_status,
)
from tests.support.workers import intent_worker, wait_worker_ready

STEPS = (names.COMPILE_ST, names.APPLY_PATCH_ST, names.DECIDE_ST, names.EXECUTE_ST)
FLAKY = {"faults": {names.EXECUTE_ST: {"kind": "net_timeout", "times": 1}}}
# Fails all three attempts the run policy allows; a retry's fourth attempt succeeds.
BROKEN = {"faults": {names.EXECUTE_ST: {"kind": "net_timeout", "times": 3}}}
# The OTLP/HTTP exporter's default port: where an exporter nobody configured would send.
DEFAULT_OTLP_PORT = 4318


def traced_worker(url: str, tmp_path: Path, name: str, *args: str, **env: str) -> WorkerProcess:
    return intent_worker(
        url,
        tmp_path,
        name,
        *args,
        env={
            "SISU_STEP_BACKOFF_SECONDS": FAST_BACKOFF,
            # Whatever the test process's environment says, only what a test sets counts.
            tracing.ENDPOINT_ENV: "",
            tracing.TRACES_ENDPOINT_ENV: "",
            **env,
        },
    )


def of_run(spans: list[Span], run_id: str) -> list[Span]:
    """The spans DBOS made inside the run's workflow: each carries its workflow id."""
    return [s for s in spans if s.attributes.get("operationUUID") == run_id]


def step_rows(url: str, run_id: str) -> dict[str, list[int]]:
    found = rows(
        url,
        "SELECT step_id, attempt FROM app.run_steps WHERE run_id = %s ORDER BY step_id, attempt",
        (run_id,),
    )
    by_step: dict[str, list[int]] = {}
    for r in found:
        by_step.setdefault(r["step_id"], []).append(r["attempt"])
    return by_step


@dataclass
class Traced:
    url: str
    spans: list[Span]
    runs: dict[str, str]  # name → run id
    exit_code: int | None


@pytest.fixture(scope="module")
def traced(module_db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traced]:
    """A tracing worker runs four intents (one with a traceId, one whose ExecuteST fails once,
    one that runs out of attempts and is retried), then stops on SIGTERM, which flushes what its
    exporter still holds."""
    url = module_db_url
    tmp = tmp_path_factory.mktemp("traces")
    with OtlpReceiver() as otlp:
        worker = traced_worker(url, tmp, "traced", **{tracing.ENDPOINT_ENV: otlp.base_url}).start()
        try:
            wait_worker_ready(url, worker)
            with fast_backend(url) as b:
                runs = {
                    "plain": start_intent(b, "deliver", inputs={"tasks": 2}),
                    "tagged": start_intent(b, "deliver too", trace_id="ticket-42"),
                    "flaky": start_intent(b, "flaky once", inputs=FLAKY),
                    "repaired": start_intent(b, "broken until retried", inputs=BROKEN),
                }
                wait_run_status(url, runs["repaired"], "retries_exceeded", worker=worker)
                wait_workflow_status(url, runs["repaired"], "ERROR")
                repair.retry_run(b, runs["repaired"])
            for run_id in runs.values():
                wait_run_done(url, run_id, worker=worker)
            exit_code = worker.stop()
        finally:
            worker.kill()
        yield Traced(url, otlp.received(), runs, exit_code)


def test_the_worker_stops_cleanly_and_its_spans_arrive(traced: Traced) -> None:
    assert traced.exit_code == 0
    assert traced.spans
    names_seen = {s.name for s in traced.spans}
    assert set(STEPS) <= names_seen, sorted(names_seen)
    assert names.RUN_INTENT_WF in names_seen
    assert {s.resource.get("service.name") for s in traced.spans} == {"sisu"}


def test_one_run_is_one_trace(traced: Traced) -> None:
    trace_of: dict[str, str] = {}
    for run_id in traced.runs.values():
        spans = of_run(traced.spans, run_id)
        assert {s.name for s in spans} >= {names.RUN_INTENT_WF, *STEPS}, run_id
        ids = {s.trace_id for s in spans}
        assert len(ids) == 1, (run_id, ids)
        [trace_of[run_id]] = ids
        # The run's id is its trace id: an operator finds the trace from `sisu run show`.
        assert trace_of[run_id] == uuid.UUID(run_id).hex
        # Nothing else landed in the run's trace.
        assert {s.span_id for s in traced.spans if s.trace_id == trace_of[run_id]} == {
            s.span_id for s in spans
        }
    assert len(set(trace_of.values())) == len(traced.runs)


def test_every_span_of_a_run_names_it_and_step_spans_their_step(traced: Traced) -> None:
    for run_id in traced.runs.values():
        spans = of_run(traced.spans, run_id)
        assert {s.attributes.get(tracing.RUN_ID) for s in spans} == {run_id}
        for s in spans:
            if s.name in STEPS:
                assert s.attributes[tracing.STEP] == s.name
        workflow = [s for s in spans if s.name == names.RUN_INTENT_WF]
        assert workflow and all(tracing.STEP not in s.attributes for s in workflow)


def attempts_of(spans: list[Span]) -> dict[str, list[int]]:
    """Step → the attempt numbers its spans carry (a replayed step's span carries none)."""
    found: dict[str, list[int]] = {}
    for s in spans:
        if s.name in STEPS and tracing.ATTEMPT in s.attributes:
            found.setdefault(s.name, []).append(s.attributes[tracing.ATTEMPT])
    return {step: sorted(numbers) for step, numbers in found.items()}


def test_step_spans_carry_the_attempt_and_the_intents_trace_id(traced: Traced) -> None:
    for name, run_id in traced.runs.items():
        spans = of_run(traced.spans, run_id)
        # One span per attempt row, with the row's number.
        assert attempts_of(spans) == step_rows(traced.url, run_id), name
        attempted = [s for s in spans if tracing.ATTEMPT in s.attributes]
        assert all(isinstance(s.attributes[tracing.ATTEMPT], int) for s in attempted)
        tagged = {s.attributes.get(tracing.TRACE_ID) for s in attempted}
        assert tagged == ({"ticket-42"} if name == "tagged" else {None}), name
        if name != "repaired":  # nothing replayed: every step span is an attempt
            assert len(attempted) == len([s for s in spans if s.name in STEPS]), name
    assert step_rows(traced.url, traced.runs["flaky"])[names.EXECUTE_ST] == [1, 2]
    # The retry went on in the run's trace: its fourth attempt is there with the first three,
    # and the steps it replayed from their checkpoints are spans without an attempt.
    repaired = of_run(traced.spans, traced.runs["repaired"])
    assert attempts_of(repaired)[names.EXECUTE_ST] == [1, 2, 3, 4]
    replayed = {s.name for s in repaired if s.name in STEPS and tracing.ATTEMPT not in s.attributes}
    assert replayed == {names.COMPILE_ST, names.APPLY_PATCH_ST, names.DECIDE_ST}


def test_a_recovered_run_goes_on_in_the_same_trace(db_url: str, tmp_path: Path) -> None:
    """Killed -9 while its run waits for a human, a worker started again with the same executor
    id recovers the run; the spans of both processes are in the run's one trace."""
    url = db_url
    with OtlpReceiver() as otlp:
        # The flag, this time; a short export delay: the killed process never flushes on exit.
        first = traced_worker(
            url, tmp_path, "recover", "--otlp-endpoint", otlp.base_url, OTEL_BSP_SCHEDULE_DELAY="50"
        ).start()
        second: WorkerProcess | None = None
        try:
            wait_worker_ready(url, first)
            with fast_backend(url) as b:
                run_id = start_intent(b, ASK_GOAL)
                wait_run_status(url, run_id, "waiting_input", worker=first)
                before = otlp.wait_for(
                    "the first worker's ApplyPatchST span",
                    lambda s: (
                        s.name == names.APPLY_PATCH_ST
                        and s.attributes.get(tracing.RUN_ID) == run_id
                    ),
                )
                first.kill()
                second = first.restart()
                wait_worker_ready(url, second)
                human.send_event(
                    b, run_id, EventRequest.model_validate({"type": "input", "payload": ANSWER})
                )
                wait_run_done(url, run_id, worker=second)
            assert second.stop() == 0
        finally:
            first.kill()
            if second is not None:
                second.kill()
        spans = of_run(otlp.received(), run_id)
    after = [s for s in spans if s.name in (names.DECIDE_ST, names.EXECUTE_ST)]
    assert {s.name for s in after} == {names.DECIDE_ST, names.EXECUTE_ST}
    # The second process's workflow span ended (the first's never did: it was killed).
    assert names.RUN_INTENT_WF in {s.name for s in spans}
    assert {s.trace_id for s in spans} == {before.trace_id} == {uuid.UUID(run_id).hex}


def _receiver_port() -> int:
    """The OTLP default port when free (so a default exporter would be heard), else any."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", DEFAULT_OTLP_PORT))
        except OSError:
            return 0
    return DEFAULT_OTLP_PORT


def test_without_the_variable_nothing_is_exported(db_url: str, tmp_path: Path) -> None:
    url = db_url
    with OtlpReceiver(port=_receiver_port()) as otlp:
        worker = traced_worker(url, tmp_path, "untraced").start()
        try:
            wait_worker_ready(url, worker)
            with fast_backend(url) as b:
                run_id = start_intent(b, "deliver", inputs={"tasks": 1})
            wait_run_done(url, run_id, worker=worker)
            # SIGTERM: a worker with an exporter would flush it now.
            assert worker.stop() == 0
        finally:
            worker.kill()
        assert otlp.posts == 0
    assert step_rows(url, run_id) == {step: [1] for step in STEPS}


KEY = "sk-sisu-traces-test"
PLAN = {"summary": "Greet.", "files": [], "tests": [], "tasks": ["announce"]}


def plan_answer(request: FakeRequest) -> dict[str, Any]:
    return tool_call_completion(output_tool_name(request), PLAN)


def test_a_model_compilers_requests_are_in_the_runs_trace(db_url: str, tmp_path: Path) -> None:
    """A model compiler plans before CompileST, each model request a DBOS step of the run's
    workflow: those spans are in the run's trace and name the run and the step."""
    url = db_url
    with OtlpReceiver() as otlp, FakeOpenAI(respond=plan_answer, api_key=KEY) as model:
        worker = traced_worker(
            url,
            tmp_path,
            "llm",
            "--compiler",
            "llm",
            SISU_LLM_MODEL="openai:fake-model",
            SISU_LLM_BASE_URL=model.base_url,
            SISU_LLM_API_KEY=KEY,
            **{tracing.ENDPOINT_ENV: otlp.base_url},
        ).start()
        try:
            wait_worker_ready(url, worker)
            with fast_backend(url) as b:
                run_id = start_intent(b, "greet")
            wait_run_done(url, run_id, worker=worker)
            assert worker.stop() == 0
        finally:
            worker.kill()
        received = otlp.received()
        chats = model.chat_count
    trace_id = uuid.UUID(run_id).hex
    # Everything the worker made, it made for this run, and says so.
    assert {s.trace_id for s in received} == {trace_id}
    assert {s.attributes.get(tracing.RUN_ID) for s in received} == {run_id}
    requests = [s for s in received if s.name.endswith("model.request")]
    assert requests and len(requests) == chats
    assert all(s.attributes[tracing.STEP] == s.name for s in requests)
    assert attempts_of(received) == step_rows(url, run_id)
