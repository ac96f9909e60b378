"""A fake OpenAI-compatible Chat Completions server for tests: real HTTP on 127.0.0.1, standard
library only, served from a thread of the test process (so it outlives a worker the test kills).

It answers `POST /v1/chat/completions` (plain JSON, or server-sent events when the request says
`"stream": true`) with a completion built by a callable the test gives, and `GET /v1/models`.
It records every request (path, headers, JSON body) so a test can count them and check where the
API key went, can fail the first N chat requests with a status (429, 500, 401…), and can stall
the Nth chat request until the test releases it.

    with FakeOpenAI(respond=lambda req: tool_call_completion("final_result", {"x": 1})) as fake:
        provider = OpenAIProvider(openai_client=AsyncOpenAI(base_url=fake.base_url,
                                                            api_key="sk-test", max_retries=0))
        ...
        assert fake.chat_count == 1

A client passed in like this is bound to one event loop: fine in a test, wrong in a worker
(docs/LLM-COMPILER.md §2).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.support.local_http import LocalServer

CHAT_PATH = "/v1/chat/completions"
MODELS_PATH = "/v1/models"
DEFAULT_MODEL = "fake-model"


@dataclass
class FakeRequest:
    """One request the server received, in arrival order."""

    index: int  # 1-based among chat-completion requests; 0 for anything else
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: Any  # the parsed JSON body, or None

    @property
    def authorization(self) -> str | None:
        return self.headers.get("authorization")


@dataclass
class FakeError:
    """Return this from `respond` (or let `fail_first` do it) to answer with an error status."""

    status: int
    message: str = "fake failure"
    type: str = "server_error"
    code: str | None = None

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "code": self.code}}


Responder = Callable[[FakeRequest], "dict[str, Any] | FakeError"]


def completion(
    *,
    content: str | None = None,
    tool_calls: list[dict[str, Any]] | None = None,
    model: str = DEFAULT_MODEL,
    prompt_tokens: int = 11,
    completion_tokens: int = 7,
) -> dict[str, Any]:
    """A `chat.completion` object with usage tokens, as the OpenAI API returns it."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": "tool_calls" if tool_calls else "stop",
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def tool_call_completion(name: str, arguments: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """A completion whose one tool call is `name(**arguments)`: how pydantic-ai's default tool
    output mode receives a structured `output_type` (the tool is named `final_result`)."""
    call = {
        "id": f"call_{uuid.uuid4().hex[:12]}",
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments)},
    }
    return completion(tool_calls=[call], **kwargs)


def output_tool_name(request: FakeRequest) -> str:
    """The name of the output tool pydantic-ai offered in this request (`final_result` for one
    output type); fails loudly when the request offered none."""
    for tool in request.body.get("tools") or []:
        name = str(tool["function"]["name"])
        if name.startswith("final_result"):
            return name
    raise AssertionError(f"request {request.index} offered no final_result tool")


def _stream_chunks(done: dict[str, Any], include_usage: bool) -> Iterator[dict[str, Any]]:
    """The same completion as `chat.completion.chunk` events: one delta with everything, one
    with the finish reason, then the usage chunk the client asked for with `include_usage`."""
    base = {k: done[k] for k in ("id", "created", "model")}
    base["object"] = "chat.completion.chunk"
    choice = done["choices"][0]
    message = choice["message"]
    delta: dict[str, Any] = {"role": "assistant", "content": message.get("content")}
    if message.get("tool_calls"):
        delta["tool_calls"] = [{"index": i, **c} for i, c in enumerate(message["tool_calls"])]
    yield {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
    finish = {"index": 0, "delta": {}, "finish_reason": choice["finish_reason"]}
    yield {**base, "choices": [finish]}
    if include_usage:
        yield {**base, "choices": [], "usage": done["usage"]}


@dataclass
class FakeOpenAI(LocalServer):
    """The server. Use as a context manager, or `start()` / `stop()`."""

    respond: Responder = field(default=lambda _req: completion(content="ok"))
    models: tuple[str, ...] = (DEFAULT_MODEL,)
    # When set, a chat request without exactly `Authorization: Bearer <api_key>` gets a 401.
    api_key: str | None = None

    def __post_init__(self) -> None:
        self.requests: list[FakeRequest] = []
        self._lock = threading.Lock()
        self._chat_count = 0
        self._failures: list[FakeError] = []
        self._stalls: dict[int, tuple[threading.Event, threading.Event]] = {}

    # -- knobs -------------------------------------------------------------------------------

    def fail_first(self, n: int, status: int, message: str = "fake failure") -> None:
        """The next `n` chat requests get `status` (with an OpenAI-shaped error body)."""
        kind = {401: "invalid_request_error", 429: "rate_limit_exceeded"}.get(
            status, "server_error"
        )
        with self._lock:
            self._failures.extend(FakeError(status, message, kind) for _ in range(n))

    def stall(self, nth: int) -> tuple[threading.Event, threading.Event]:
        """Hold the `nth` chat request (1-based) until the returned `release` event is set.
        Returns `(arrived, release)`: `arrived` is set once that request is being held — the
        positive signal to wait for before killing a client."""
        arrived, release = threading.Event(), threading.Event()
        with self._lock:
            self._stalls[nth] = (arrived, release)
        return arrived, release

    # -- what it saw -------------------------------------------------------------------------

    @property
    def chat_requests(self) -> list[FakeRequest]:
        with self._lock:
            return [r for r in self.requests if r.path == CHAT_PATH]

    @property
    def chat_count(self) -> int:
        with self._lock:
            return self._chat_count

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """What to give the OpenAI client (`base_url`), e.g. http://127.0.0.1:PORT/v1."""
        return f"http://127.0.0.1:{self.port}/v1"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        return _handler_for(self)

    def _release_held(self) -> None:
        with self._lock:
            for _, release in self._stalls.values():
                release.set()

    # -- serving (called from handler threads) -----------------------------------------------

    def _record(self, method: str, path: str, headers: dict[str, str], body: Any) -> FakeRequest:
        with self._lock:
            index = 0
            if path == CHAT_PATH:
                self._chat_count += 1
                index = self._chat_count
            request = FakeRequest(index, method, path, headers, body)
            self.requests.append(request)
            return request

    def _answer_chat(self, request: FakeRequest) -> dict[str, Any] | FakeError:
        if self.api_key is not None and request.authorization != f"Bearer {self.api_key}":
            return FakeError(401, "Incorrect API key provided", "invalid_request_error")
        with self._lock:
            failure = self._failures.pop(0) if self._failures else None
            stall = self._stalls.get(request.index)
        if stall is not None:
            arrived, release = stall
            arrived.set()
            release.wait()
        if failure is not None:
            return failure
        return self.respond(request)


def _handler_for(  # noqa: C901 — the handler class is a closure over the fake
    fake: FakeOpenAI,
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the OpenAI client expects

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: tests assert on what was recorded, not on logs

        def _headers(self) -> dict[str, str]:
            return {k.lower(): v for k, v in self.headers.items()}

        def _send_json(self, status: int, payload: Any) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            fake._record("GET", self.path, self._headers(), None)
            # A model list may carry a query (Anthropic's SDK asks `?limit=`): ignored.
            if self.path.partition("?")[0] != MODELS_PATH:
                self._send_json(404, FakeError(404, f"no route {self.path}", "not_found").body())
                return
            data = [
                {"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in fake.models
            ]
            self._send_json(200, {"object": "list", "data": data})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
            request = fake._record("POST", self.path, self._headers(), body)
            if self.path != CHAT_PATH:
                self._send_json(404, FakeError(404, f"no route {self.path}", "not_found").body())
                return
            if not isinstance(body, dict):
                self._send_json(400, FakeError(400, "body is not JSON", "invalid_request").body())
                return
            try:
                answer = fake._answer_chat(request)
                if isinstance(answer, FakeError):
                    self._send_json(answer.status, answer.body())
                elif body.get("stream"):
                    include = bool((body.get("stream_options") or {}).get("include_usage"))
                    self._send_stream(answer, include)
                else:
                    self._send_json(200, answer)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client went away (a killed worker): nothing to answer

        def _send_stream(self, done: dict[str, Any], include_usage: bool) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            for chunk in _stream_chunks(done, include_usage):
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()

    return Handler
