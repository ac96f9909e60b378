"""The wire contracts: requests fail closed on unknown fields and wrong types, RunView keeps the key
order DESIGN.md fixes, errors have one envelope, and the golden RunView file agrees with the
model it was produced from."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from sisu.contracts.base import error_details
from sisu.contracts.runs import (
    STEP_IDS,
    ErrorBody,
    EventRequest,
    IntentCreate,
    RunRequest,
    RunStarted,
    RunView,
    StepView,
)
from sisu.errors import NotFound, ValidationFailed
from tests.support.runview import (
    DESIGN_RUNVIEW_KEYS,
    ERROR_KEYS,
    STEP_KEYS,
    assert_runview_shape,
    runview_keys,
)

GOLDEN = Path(__file__).parent / "golden" / "runview.json"
T0 = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


def aliases(model: type[Any]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


# --- requests ------------------------------------------------------------------------------


def test_intent_create_accepts_the_documented_body() -> None:
    body = IntentCreate.model_validate(
        {"goal": "demo", "inputs": {"tasks": 2}, "constraints": {"x": 1}, "connectors": []}
    )
    assert (body.goal, body.inputs, body.constraints) == ("demo", {"tasks": 2}, {"x": 1})
    assert IntentCreate.model_validate({"goal": "demo"}).inputs == {}


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"goal": "g", "bogus": 1}, id="unknown-field"),
        pytest.param({"goal": "g", "Inputs": {}}, id="wrong-case-field"),
        pytest.param({"goal": ""}, id="empty-goal"),
        pytest.param({}, id="missing-goal"),
        pytest.param({"goal": None}, id="null-goal"),
        pytest.param({"goal": "g" * 4001}, id="goal-too-long"),
        pytest.param({"goal": "g", "inputs": [1]}, id="inputs-array"),
        pytest.param({"goal": "g", "inputs": "text"}, id="inputs-string"),
        pytest.param({"goal": "g", "inputs": 3}, id="inputs-number"),
        pytest.param({"goal": "g", "inputs": None}, id="inputs-null"),
        pytest.param({"goal": "g", "constraints": [1]}, id="constraints-array"),
        pytest.param({"goal": "g", "connectors": {"a": 1}}, id="connectors-object"),
    ],
)
def test_intent_create_rejects(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        IntentCreate.model_validate(body)


def test_run_request_accepts_an_empty_body_and_a_trace_id() -> None:
    assert RunRequest.model_validate({}).trace_id is None
    assert RunRequest.model_validate({"traceId": "ops-01"}).trace_id == "ops-01"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"bogus": True}, id="unknown-field"),
        pytest.param({"traceId": "t", "runId": "x"}, id="unknown-field-with-known"),
        pytest.param({"traceId": ""}, id="empty-trace-id"),
        pytest.param({"traceId": 7}, id="trace-id-number"),
        pytest.param({"traceId": "t" * 201}, id="trace-id-too-long"),
    ],
)
def test_run_request_rejects(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        RunRequest.model_validate(body)


# --- values PostgreSQL cannot store ---------------------------------------------------------


def fields_of(exc: ValidationError) -> list[str | None]:
    return [d["field"] for d in error_details(list(exc.errors()))[1]]


@pytest.mark.parametrize(
    ("model", "body", "field"),
    [
        pytest.param(IntentCreate, {"goal": "a\x00b"}, "goal", id="goal-nul"),
        pytest.param(
            IntentCreate, {"goal": "g", "inputs": {"a": [{"b": "\x00"}]}}, "inputs.a[0].b",
            id="inputs-deep-nul",
        ),
        pytest.param(
            IntentCreate, {"goal": "g", "constraints": {"k\x00": 1}}, "constraints.k\\u0000",
            id="constraints-key-nul",
        ),
        pytest.param(
            IntentCreate, {"goal": "g", "inputs": {"x": float("inf")}}, "inputs.x", id="infinity"
        ),
        pytest.param(IntentCreate, {"goal": "g", "inputs": {"s": "\ud800"}}, "inputs.s",
                     id="lone-surrogate"),
        pytest.param(IntentCreate, {"goal": "g", "connectors": ["\x00"]}, "connectors[0]",
                     id="connectors-nul"),
        pytest.param(RunRequest, {"traceId": "\x00"}, "traceId", id="trace-id-nul"),
        pytest.param(RunRequest, {"queuePartitionKey": "p\x00"}, "queuePartitionKey",
                     id="partition-key-nul"),
        pytest.param(EventRequest, {"type": "input", "payload": {"a": "\x00"}}, "payload.a",
                     id="event-payload-nul"),
        pytest.param(EventRequest, {"type": "input", "payload": {}, "idempotencyKey": "\x00"},
                     "idempotencyKey", id="event-key-nul"),
    ],
)  # fmt: skip
def test_values_postgresql_cannot_store_are_refused_by_field(
    model: type[Any], body: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(body)
    assert fields_of(caught.value) == [field]


def test_a_deeply_nested_document_is_walked_without_recursion() -> None:
    deep: Any = "\x00"
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(ValidationError) as caught:
        IntentCreate.model_validate({"goal": "g", "inputs": {"d": deep}})
    assert fields_of(caught.value) == ["inputs.d" + "[0]" * 5000]


def test_storable_values_pass_unchanged() -> None:
    inputs = {"text": "ünïcödé ✓ \t\n", "n": 1.5, "big": 10**30, "none": None, "list": [True]}
    assert IntentCreate.model_validate({"goal": "g ✓", "inputs": inputs}).inputs == inputs


def test_a_whole_number_is_an_integer_as_json_schema_says() -> None:
    """JSON Schema's `integer` includes 5.0; strings, fractions and booleans stay refused."""
    request = RunRequest.model_validate({"priority": 5.0, "workload": {"steps": 2.0}})
    assert request.priority == 5
    assert type(request.priority) is int
    assert request.workload is not None
    assert request.workload.steps == 2
    for bad in ["5", 5.5, True]:
        with pytest.raises(ValidationError):
            RunRequest.model_validate({"priority": bad})


# --- RunView -------------------------------------------------------------------------------


def test_runview_key_order_is_exactly_the_design_order() -> None:
    assert aliases(RunView) == DESIGN_RUNVIEW_KEYS


def test_runview_keeps_the_design_keys_in_the_design_order() -> None:
    keys = aliases(RunView)
    assert [k for k in keys if k in DESIGN_RUNVIEW_KEYS] == DESIGN_RUNVIEW_KEYS
    assert keys[:8] == DESIGN_RUNVIEW_KEYS[:8]
    assert keys[-4:] == DESIGN_RUNVIEW_KEYS[-4:]


def test_step_view_key_order() -> None:
    assert aliases(StepView) == STEP_KEYS


def test_run_started_keys() -> None:
    assert aliases(RunStarted) == ["runId", "workflowId", "intentId", "status"]


def fixed_view(**overrides: Any) -> RunView:
    """A RunView built from fixed data, as the service layer builds it (snake_case names)."""
    data: dict[str, Any] = {
        "run_id": "r-1",
        "intent_id": "r-1",
        "workflow_id": "r-1",
        "status": "succeeded",
        "next_action": None,
        "last_step": "ExecuteST",
        "retry_count": 0,
        "trace_id": "t-1",
        "lane": "batch",
        "priority": 100,
        "compiler": {
            "name": "builtin",
            "model": None,
            "requests": 1,
            "input_tokens": None,
            "output_tokens": None,
        },
        "steps": [
            StepView(
                step_id=step,
                attempt=1,
                phase="succeeded",
                output={"n": i},
                error=None,
                started_at=T0,
                finished_at=T0,
            )
            for i, step in enumerate(STEP_IDS)
        ],
        "artifacts": [],
        "created_at": T0,
        "updated_at": T0,
    }
    data.update(overrides)
    known = {f for f in RunView.model_fields}
    return RunView(**{k: v for k, v in data.items() if k in known})


def test_runview_json_from_fixed_data() -> None:
    doc = json.loads(fixed_view().to_json())
    assert_runview_shape(doc)
    assert [s["stepId"] for s in doc["steps"]] == list(STEP_IDS)
    assert doc["createdAt"] == "2026-01-02T03:04:05.678000Z"
    assert doc["steps"][0]["startedAt"] == "2026-01-02T03:04:05.678000Z"
    # The wire form is camelCase only: snake_case names never leak out.
    assert not [k for k in doc if "_" in k]
    # And it reads back as the same model.
    assert RunView.model_validate(doc) == fixed_view()


def test_runview_rejects_an_unknown_status() -> None:
    with pytest.raises(ValidationError):
        fixed_view(status="done")


# --- errors --------------------------------------------------------------------------------


def test_error_envelope_keys() -> None:
    assert set(aliases(ErrorBody)) == ERROR_KEYS
    for exc in (NotFound("no run x", details={"runId": "x"}), ValidationFailed()):
        envelope = exc.envelope()
        assert set(envelope) == ERROR_KEYS
        assert ErrorBody.model_validate(envelope).error == exc.code
    assert NotFound().envelope()["error"] == "not_found"
    assert ValidationFailed().envelope()["error"] == "validation_error"


# --- the golden file -----------------------------------------------------------------------


def concrete(doc: Any, key: str | None = None) -> Any:
    """The golden file with its placeholders filled in, so the model can read it."""
    if isinstance(doc, dict):
        return {k: concrete(v, k) for k, v in doc.items()}
    if isinstance(doc, list):
        return [concrete(v, key) for v in doc]
    if doc == "<time>":
        return "2026-01-02T03:04:05.678000Z"
    if doc == "<sha256>":
        return "0" * 64
    if isinstance(doc, str):
        return doc.replace("<runId>", "r-1").replace("<workspaces>", "/ws")
    return doc


def test_the_golden_runview_matches_the_model() -> None:
    golden = json.loads(GOLDEN.read_text())
    assert list(golden) == runview_keys()
    assert [s["stepId"] for s in golden["steps"]] == list(STEP_IDS)
    assert all(list(s) == STEP_KEYS for s in golden["steps"])
    doc = concrete(golden)
    # Through the model and back: nothing lost, nothing added, nothing reordered.
    assert json.loads(RunView.model_validate(doc).to_json()) == doc
    assert list(json.loads(RunView.model_validate(doc).to_json())) == list(doc)
