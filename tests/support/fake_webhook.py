"""A fake webhook receiver for tests: real HTTP on 127.0.0.1, standard library only, served from a
thread of the test process (so it outlives a worker the test kills).

It records every request (path, headers, raw and parsed body) and counts them per
`Idempotency-Key`, so a test can prove a task was POSTed exactly once. It answers 200 with a small
JSON body unless told otherwise: `answer(status, times=K)` gives the next K requests `status`
(with a body the test chooses, or one built from the request), and `hang(times=K)` holds the next
K requests without an answer until the test releases them (or the server stops).

    with FakeWebhook() as hook:
        executor = HttpExecutor(hook.url, "tok", db_url)
        hook.answer(503, times=1)
        ...
        assert hook.count(key) == 2
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.support.local_http import LocalServer

HOOK_PATH = "/hook"


@dataclass
class WebhookRequest:
    """One request the receiver got, in arrival order."""

    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    raw: bytes
    body: Any  # the parsed JSON body, or None

    @property
    def idempotency_key(self) -> str | None:
        return self.headers.get("idempotency-key")

    @property
    def authorization(self) -> str | None:
        return self.headers.get("authorization")


# An answer's body: fixed text, or text built from the request it answers.
Body = str | Callable[[WebhookRequest], str]


@dataclass
class Hang:
    """Requests held without an answer: `arrived` is set once one is being held (the signal to
    wait for before killing a client); setting `release` lets them answer 200."""

    arrived: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)


@dataclass
class _Answer:
    status: int
    body: Body = ""
    held: Hang | None = None  # hang until released, then answer 200


def _ok_body(request: WebhookRequest) -> str:
    return json.dumps({"ok": True, "key": request.idempotency_key})


@dataclass
class FakeWebhook(LocalServer):
    """The receiver. Use as a context manager, or `start()` / `stop()`."""

    def __post_init__(self) -> None:
        self.requests: list[WebhookRequest] = []
        self._lock = threading.Lock()
        self._script: list[_Answer] = []
        self._hangs: list[Hang] = []

    # -- knobs -------------------------------------------------------------------------------

    def answer(self, status: int, *, times: int = 1, body: Body = "") -> None:
        """The next `times` requests get `status` with `body` (after any already scripted)."""
        with self._lock:
            self._script.extend(_Answer(status, body) for _ in range(times))

    def hang(self, *, times: int = 1) -> Hang:
        """The next `times` requests (after any already scripted) get no answer until
        `release` is set, then a 200."""
        held = Hang()
        with self._lock:
            self._script.extend(_Answer(200, held=held) for _ in range(times))
            self._hangs.append(held)
        return held

    # -- what it saw -------------------------------------------------------------------------

    def counts(self) -> Counter[str | None]:
        """Requests received per Idempotency-Key (None: sent without one)."""
        with self._lock:
            return Counter(r.idempotency_key for r in self.requests)

    def count(self, key: str) -> int:
        return self.counts()[key]

    @property
    def total(self) -> int:
        with self._lock:
            return len(self.requests)

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{HOOK_PATH}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        return _handler_for(self)

    def _release_held(self) -> None:
        with self._lock:
            for held in self._hangs:
                held.release.set()

    # -- serving (called from handler threads) -----------------------------------------------

    def _receive(self, request: WebhookRequest) -> tuple[int, str]:
        with self._lock:
            self.requests.append(request)
            scripted = self._script.pop(0) if self._script else None
        if scripted is None:
            return 200, _ok_body(request)
        if scripted.held is not None:
            scripted.held.arrived.set()
            scripted.held.release.wait()
            return 200, _ok_body(request)
        body = scripted.body(request) if callable(scripted.body) else scripted.body
        return scripted.status, body


def _handler_for(fake: FakeWebhook) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as an HTTP client expects

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: tests assert on what was recorded, not on logs

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, text = fake._receive(WebhookRequest("POST", self.path, headers, raw, body))
            data = text.encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client went away (it timed out, or was killed): nothing to answer

    return Handler
