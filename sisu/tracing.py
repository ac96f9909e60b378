"""OpenTelemetry traces of runs: where a worker sends them (the standard OTLP environment
variables; off when none is set), the trace context a run is enqueued with, so that every span
DBOS makes for it, in every execution of it, lands in one trace, and the sisu attributes on
step spans. DBOS makes and exports the spans; opentelemetry is imported only when tracing is on."""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from collections.abc import Mapping
from typing import Any

# The standard variables (https://opentelemetry.io/docs/specs/otel/protocol/exporter/): the
# signal-specific one is the traces URL as it is; the general one is a base URL under which
# traces go to /v1/traces.
TRACES_ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_ENDPOINT"
TRACES_PATH = "/v1/traces"
# The workflow attribute DBOS reads a run's trace context from, on first execution and on
# recovery (its OTEL_CARRIER_ATTRIBUTE, which PropagateOtelContext writes; tests/unit/test_tracing
# checks that DBOS still reads it).
CARRIER_ATTRIBUTE = "dbos.otelContext"

RUN_ID = "sisu.run_id"
STEP = "sisu.step"
ATTEMPT = "sisu.attempt"
TRACE_ID = "sisu.trace_id"

_enabled = False
log = logging.getLogger("sisu.tracing")


def traces_endpoint(environ: Mapping[str, str] | None = None) -> str | None:
    """The OTLP/HTTP traces URL from the environment, or None: tracing is off."""
    env = os.environ if environ is None else environ
    specific = env.get(TRACES_ENDPOINT_ENV, "").strip()
    if specific:
        return specific
    base = env.get(ENDPOINT_ENV, "").strip()
    if not base:
        return None
    return base.rstrip("/") + TRACES_PATH


class _NoLogExporterFilter(logging.Filter):
    """DBOS's OTLP switch covers logs too; sisu exports traces only, so DBOS's warning that it
    found no log provider (once, at start) says nothing an operator should act on."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "logger provider not set" not in record.getMessage()


def enable() -> None:
    """Mark this process as tracing (the worker, before DBOS is configured to export)."""
    global _enabled
    _enabled = True
    logger = logging.getLogger("dbos")
    if not any(isinstance(f, _NoLogExporterFilter) for f in logger.filters):
        logger.addFilter(_NoLogExporterFilter())


def enabled() -> bool:
    return _enabled


def run_trace_ids(run_id: str) -> tuple[str, str]:
    """The W3C trace id and parent span id (hex) of a run's trace. A run id that is a UUID (the
    intent id sisu makes) is its own trace id, so a run's trace is found from its id; any other
    id is hashed. The parent span stands for the trigger; no process exports it."""
    digest = hashlib.sha256(f"sisu-run:{run_id}".encode()).hexdigest()
    try:
        trace_id = uuid.UUID(run_id).hex
    except ValueError:
        trace_id = digest[:32]
    if int(trace_id, 16) == 0:  # all zeros is invalid in W3C trace context
        trace_id = digest[:32]
    span_id = digest[32:48]
    if int(span_id, 16) == 0:
        span_id = digest[48:64]
    return trace_id, span_id


def run_attributes(run_id: str) -> dict[str, Any]:
    """Workflow attributes to enqueue a run with: its trace context, as a `traceparent`. Written
    whether or not anyone traces (a short string, and no import): the worker that runs it may."""
    trace_id, span_id = run_trace_ids(run_id)
    return {CARRIER_ATTRIBUTE: {"traceparent": f"00-{trace_id}-{span_id}-01"}}


def label_spans() -> None:
    """Every span DBOS makes inside a workflow names its run (`sisu.run_id`, the workflow id),
    and a step's span its step (`sisu.step`) — a step that replays its recorded result after a
    recovery or a retry too, which `annotate` never sees. Call after `DBOS()` made the provider."""
    if not _enabled:
        return
    from opentelemetry import trace
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import Span, SpanProcessor, TracerProvider

    class RunLabels(SpanProcessor):
        def on_start(self, span: Span, parent_context: Context | None = None) -> None:
            from dbos import DBOS

            run_id = DBOS.workflow_id
            if run_id:
                span.set_attribute(RUN_ID, run_id)
                if DBOS.step_id is not None:
                    span.set_attribute(STEP, span.name)

    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.add_span_processor(RunLabels())


def annotate(attributes: Mapping[str, str | int | None]) -> None:
    """Set sisu attributes on the span DBOS has active (a step's, as its attempt runs), when
    tracing is on."""
    if not _enabled:
        return
    from dbos import DBOS

    span = DBOS.span
    if span is None or not span.is_recording():
        return
    for key, value in attributes.items():
        if value is not None:
            span.set_attribute(key, value)


def shutdown() -> None:
    """Flush and stop the span exporters (DBOS.destroy does not): a worker stopped with SIGTERM
    sends the spans it still holds."""
    if not _enabled:
        return
    from opentelemetry import trace

    provider = trace.get_tracer_provider()
    stop = getattr(provider, "shutdown", None)
    if not callable(stop):
        return
    try:
        stop()
    except Exception as exc:  # an unreachable collector must not keep a worker from stopping
        log.warning("could not flush traces: %s", exc)
