"""sisu.tracing: which environment turns traces on and where they go, the DBOS config it makes,
and the trace context a run is enqueued with (read back by DBOS's own W3C extractor)."""

from __future__ import annotations

import uuid

import pytest

from sisu import engine, tracing


@pytest.mark.parametrize(
    ("env", "want"),
    [
        ({}, None),
        ({tracing.ENDPOINT_ENV: ""}, None),
        ({tracing.ENDPOINT_ENV: "  "}, None),
        ({tracing.ENDPOINT_ENV: "http://collector:4318"}, "http://collector:4318/v1/traces"),
        ({tracing.ENDPOINT_ENV: "http://collector:4318/"}, "http://collector:4318/v1/traces"),
        ({tracing.ENDPOINT_ENV: "http://c:4318/base"}, "http://c:4318/base/v1/traces"),
        ({tracing.TRACES_ENDPOINT_ENV: "http://t:9/x"}, "http://t:9/x"),
        (
            {tracing.ENDPOINT_ENV: "http://c:4318", tracing.TRACES_ENDPOINT_ENV: "http://t:9/x"},
            "http://t:9/x",
        ),
    ],
)
def test_traces_endpoint_follows_the_otel_variables(env: dict[str, str], want: str | None) -> None:
    assert tracing.traces_endpoint(env) == want


def test_dbos_config_turns_otlp_on_only_with_an_endpoint() -> None:
    off = engine.dbos_config("postgresql://h/db", app_version="v1", executor_id="e")
    assert "enable_otlp" not in off and "otlp_traces_endpoints" not in off
    on = engine.dbos_config(
        "postgresql://h/db",
        app_version="v1",
        executor_id="e",
        traces_endpoint="http://c:4318/v1/traces",
    )
    assert on["enable_otlp"] is True
    assert on["otlp_traces_endpoints"] == ["http://c:4318/v1/traces"]


def test_a_uuid_run_id_is_its_trace_id() -> None:
    run_id = str(uuid.uuid4())
    trace_id, span_id = tracing.run_trace_ids(run_id)
    assert trace_id == uuid.UUID(run_id).hex
    assert len(span_id) == 16 and int(span_id, 16) != 0
    assert tracing.run_trace_ids(run_id) == (trace_id, span_id)  # deterministic


def test_other_run_ids_hash_to_a_valid_trace_id() -> None:
    ids = {tracing.run_trace_ids(f"run-{i}")[0] for i in range(50)}
    assert len(ids) == 50
    assert all(len(t) == 32 and int(t, 16) != 0 for t in ids)
    zero = str(uuid.UUID(int=0))
    trace_id, _ = tracing.run_trace_ids(zero)
    assert int(trace_id, 16) != 0


def test_run_attributes_are_a_carrier_dbos_reads() -> None:
    from dbos._context import OTEL_CARRIER_ATTRIBUTE, extract_trace_context
    from opentelemetry.trace import get_current_span

    run_id = str(uuid.uuid4())
    attributes = tracing.run_attributes(run_id)
    assert set(attributes) == {OTEL_CARRIER_ATTRIBUTE}
    context = extract_trace_context(attributes[OTEL_CARRIER_ATTRIBUTE])
    assert context is not None
    span_context = get_current_span(context).get_span_context()
    trace_id, span_id = tracing.run_trace_ids(run_id)
    assert span_context.trace_id == int(trace_id, 16)
    assert span_context.span_id == int(span_id, 16)
    assert span_context.is_remote and span_context.trace_flags.sampled
