"""The api-shim's outer guards, as pure ASGI middleware so they act before a route reads a byte:
the bearer token and the request body limit; and, around them all, the request metrics."""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Match

from sisu.errors import PayloadTooLarge, SisuError, Unauthorized
from sisu.metrics import UNMATCHED_ROUTE

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("sisu.api")

# Liveness probes cannot carry a token; /healthz tells nothing an attacker could use.
OPEN_PATHS = frozenset({"/healthz"})


async def send_error(
    exc: SisuError,
    scope: Scope,
    receive: Receive,
    send: Send,
    headers: dict[str, str] | None = None,
) -> None:
    response = JSONResponse(exc.envelope(), status_code=exc.http_status, headers=headers)
    await response(scope, receive, send)


def token_matches(authorization: str, token: str) -> bool:
    """`Bearer <token>`, the scheme word in any case (RFC 7235), compared in constant time."""
    scheme, _, given = authorization.strip().partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )


class BearerAuth:
    """Every request but the liveness probe needs the token; a 401 says how to send it."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS:
            given = Headers(scope=scope).get("authorization", "")
            if not token_matches(given, self.token):
                await send_error(
                    Unauthorized(), scope, receive, send, {"WWW-Authenticate": "Bearer"}
                )
                return
        await self.app(scope, receive, send)


class BodyLimit:
    """Refuse a body over `max_bytes` with 413 payload_too_large having read at most that much:
    at once when Content-Length says so, else as soon as a streamed (chunked) body passes it.
    A body within the limit is buffered here and handed to the app unchanged."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"request body is larger than {self.max_bytes} bytes (SISU_MAX_BODY_BYTES)",
            details={"maxBytes": self.max_bytes},
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            # The server discards the unread rest of the body after this answer.
            await send_error(self._too_large(), scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        pending: list[Message] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                pending.append(message)  # a disconnect: the app learns of it in turn
                break
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                await send_error(self._too_large(), scope, receive, send)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        pending.insert(0, {"type": "http.request", "body": b"".join(chunks), "more_body": False})

        async def replay() -> Message:
            return pending.pop(0) if pending else await receive()

        await self.app(scope, replay, send)


class CatchAll:
    """Any exception a route lets out becomes the 500 envelope, logged with its traceback here.
    Starlette's own last resort answers too, but then re-raises, and the server drops the
    keep-alive connection under the client; caught here, the connection lives on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception as exc:
            log.error("unexpected error on %s %s", scope["method"], scope["path"], exc_info=exc)
            if started:
                raise
            await send_error(unexpected(exc), scope, receive, send)


def unexpected(exc: BaseException) -> SisuError:
    return SisuError(f"unexpected error ({type(exc).__name__}); the api-shim's log has the details")


def route_template(scope: Scope, routes: list[BaseRoute]) -> str:
    """The template of the route that served (or would serve) the request, e.g.
    `/runs/{run_id}`: what the router put in the scope, else the first route the path
    matches (a request the token or the body limit refused never reached the router)."""
    route = scope.get("route")
    if route is None:
        partial = None
        for candidate in routes:
            match, _ = candidate.matches(scope)
            if match is Match.FULL:
                route = candidate
                break
            if match is Match.PARTIAL and partial is None:
                partial = candidate  # the path matches, the method does not (a 405)
        route = route or partial
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED_ROUTE


class RequestMetrics:
    """Counts every answered request by method, route template and status, and times it. The
    outermost middleware: a 401 or a 413 is counted too."""

    def __init__(
        self,
        app: ASGIApp,
        observe: Callable[[str, str, int, float], None],
        routes: list[BaseRoute],
    ) -> None:
        self.app = app
        self.observe = observe
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        status = 500  # what the client gets if the app fails before it answers

        async def watched(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, watched)
        finally:
            self.observe(
                str(scope["method"]),
                route_template(scope, self.routes),
                status,
                time.monotonic() - started,
            )
