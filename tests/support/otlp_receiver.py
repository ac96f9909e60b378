"""A tiny OTLP/HTTP traces receiver for tests: real HTTP on 127.0.0.1, served from a thread of
the test process (so it outlives a worker the test kills). It accepts `POST /v1/traces` with a
protobuf `ExportTraceServiceRequest` (what opentelemetry's OTLP/HTTP exporter sends), decodes it
with opentelemetry-proto, and keeps every span, flattened.

    with OtlpReceiver() as otlp:
        worker env: OTEL_EXPORTER_OTLP_ENDPOINT=otlp.base_url
        ...
        spans = otlp.spans_of_run(run_id)
"""

from __future__ import annotations

import gzip
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from tests.support.local_http import LocalServer
from tests.support.polling import poll

TRACES_PATH = "/v1/traces"


@dataclass(frozen=True)
class Span:
    """One received span: ids as lower-case hex, attributes decoded to Python values."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]
    resource: dict[str, Any]


def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, kind)


def decode(body: bytes) -> list[Span]:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans: list[Span] = []
    for rs in request.resource_spans:
        resource = {a.key: _value(a.value) for a in rs.resource.attributes}
        for ss in rs.scope_spans:
            for s in ss.spans:
                spans.append(
                    Span(
                        name=s.name,
                        trace_id=s.trace_id.hex(),
                        span_id=s.span_id.hex(),
                        parent_span_id=s.parent_span_id.hex(),
                        attributes={a.key: _value(a.value) for a in s.attributes},
                        resource=resource,
                    )
                )
    return spans


class OtlpReceiver(LocalServer):
    """The receiver. Use as a context manager, or `start()` / `stop()`."""

    def __init__(self, port: int = 0) -> None:
        self._bind_port = port
        self.spans: list[Span] = []
        self.posts = 0  # export requests received, whatever their path
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                encoding = (self.headers.get("content-encoding") or "").lower()
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                with receiver._lock:
                    receiver.posts += 1
                if self.path != TRACES_PATH:
                    self.send_response(404)
                    self.end_headers()
                    return
                spans = decode(body)
                with receiver._lock:
                    receiver.spans.extend(spans)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def received(self) -> list[Span]:
        with self._lock:
            return list(self.spans)

    def spans_where(self, match: Callable[[Span], bool]) -> list[Span]:
        return [s for s in self.received() if match(s)]

    def wait_for(self, what: str, match: Callable[[Span], bool], *, timeout: float = 60) -> Span:
        """The first received span matching `match`, once one has arrived."""

        def probe() -> Span | None:
            found = self.spans_where(match)
            return found[0] if found else None

        return poll(what, probe, timeout=timeout, interval=0.1)
