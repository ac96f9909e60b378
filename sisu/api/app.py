"""FastAPI routes of the api-shim. Routes only: every decision is in `sisu.service`. The OpenAPI
document it serves says what it really answers (400 not 422, the error envelope, 401/413/415)."""

from __future__ import annotations

import email.message
from collections.abc import Mapping
from typing import Annotated, Any

import psycopg
import sqlalchemy.exc
from fastapi import Body, Depends, FastAPI, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from sisu import __version__, metrics
from sisu.api.middleware import BearerAuth, BodyLimit, CatchAll, RequestMetrics, unexpected
from sisu.config import Settings
from sisu.contracts.base import NUL_MESSAGE, Text, error_details
from sisu.contracts.runs import (
    CancelAccepted,
    CompilerCall,
    ErrorBody,
    EventAccepted,
    EventRequest,
    HealthView,
    InboxCursor,
    InboxPage,
    IntentCreate,
    IntentCreated,
    RetryAccepted,
    RunPage,
    RunRequest,
    RunsCursor,
    RunStarted,
    RunStatus,
    RunView,
)
from sisu.errors import SisuError, UnsupportedMediaType, ValidationFailed
from sisu.service import health, human, intents, paging, repair, views
from sisu.service.backend import Backend


def _error(
    status: int,
    code: str,
    message: str,
    details: Any = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        status_code=status,
        content={"error": code, "message": message, "details": details},
        headers=headers,
    )


def _validation_error(exc: RequestValidationError) -> JSONResponse:
    """400 invalid_json for a body that is not JSON, 400 validation_error with field details
    for one that does not match the contract."""
    errors = list(exc.errors())
    if any(err.get("type") == "json_invalid" for err in errors):
        return _error(400, "invalid_json", "request body is not valid JSON")
    message, details = error_details(errors)
    return _error(400, "validation_error", message, details)


HTTP_CODES = {
    400: "invalid_json",  # FastAPI's only own 400: a body its JSON parser gave up on
    404: "not_found",
    405: "method_not_allowed",
}


async def require_json(request: Request) -> None:
    """A body must be sent as JSON; one sent as a form (curl -d's default) or with no
    Content-Type is told so, instead of failing with a puzzling type error (FastAPI reads only
    a body declared JSON as JSON). An empty body is no body: the run trigger takes none."""
    if not await request.body():
        return
    content_type = request.headers.get("content-type")
    parsed = email.message.Message()
    parsed["content-type"] = content_type or ""
    subtype = parsed.get_content_subtype()
    if (
        content_type
        and parsed.get_content_maintype() == "application"
        and (subtype == "json" or subtype.endswith("+json"))
    ):
        return
    sent = f"as {parsed.get_content_type()}" if content_type else "without a Content-Type"
    raise UnsupportedMediaType(
        f"request body sent {sent}: send it as JSON with `Content-Type: application/json`",
        details={"contentType": content_type},
    )


JSON_BODY = [Depends(require_json)]


def known_query(request: Request) -> None:
    """A query parameter the route does not take is a mistake (a misspelt `limit` would be
    silently ignored): refused like an unknown body field."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    known = {p.alias for p in dependant.query_params} if dependant is not None else set()
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        raise ValidationFailed(
            f"unknown query parameter {unknown[0]!r}"
            + (f"; this route takes {', '.join(sorted(known))}" if known else ""),
            details=[{"field": name, "type": "extra_forbidden"} for name in unknown],
        )


# Path ids go into SQL: refuse what PostgreSQL cannot hold (a NUL from `/runs/%00`) as input.
RunId = Annotated[Text, Path(description="The run id (= intent id = workflow id).")]
IntentId = Annotated[Text, Path(description="The intent id.")]

# The paged lists' query parameters.
PageLimit = Annotated[
    int,
    Query(ge=1, le=paging.MAX_LIMIT, description="At most this many items on the page."),
]
AFTER_DESCRIPTION = (
    "Start after this cursor: the `next` of the previous page (omit for the first page). "
    "Anything else is a 400 validation_error naming `after`."
)
RunsAfter = Annotated[RunsCursor | None, Query(description=AFTER_DESCRIPTION)]
InboxAfter = Annotated[InboxCursor | None, Query(description=AFTER_DESCRIPTION)]

_DESCRIPTIONS = {
    400: "Invalid input: `invalid_json`, `validation_error` (field details), "
    "`queue_policy_violation`. Nothing was written.",
    401: "Missing or wrong bearer token (`unauthorized`); only when the server has "
    "SISU_API_TOKEN set. Answers carry `WWW-Authenticate: Bearer`.",
    404: "No such intent or run (`not_found`).",
    409: "Not allowed in the object's current state (`invalid_state`, `duplicate_run`), or an "
    "`Idempotency-Key` already used with another request (`idempotency_conflict`).",
    413: "Request body over SISU_MAX_BODY_BYTES (`payload_too_large`), refused unread.",
    415: "Request body not sent as `Content-Type: application/json` (`unsupported_media_type`).",
    500: "Unexpected error (`internal_error`); the server log has the details.",
    503: "The database cannot be reached (`db_unavailable`).",
}


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses for the error statuses a route can answer, all with the envelope. Every
    route but /healthz can also answer 401 (token), 413 (body limit), 500 and 503."""
    every = (401, 413, 500, 503)
    return {
        status: {"model": ErrorBody, "description": _DESCRIPTIONS[status]}
        for status in sorted({*statuses, *every})
    }


def create_app(  # noqa: C901 — the route handlers are closures; each is small
    backend: Backend,
    settings: Settings,
    *,
    api_token: str | None = None,
    max_body_bytes: int | None = None,
) -> FastAPI:
    app = FastAPI(
        dependencies=[Depends(known_query)],
        title="sisu api-shim",
        version=__version__,
        description="Submit intents, trigger their durable runs, read run state. Every error "
        "is the envelope `{error, message, details}`; invalid input is a 400 and writes nothing. "
        + NUL_MESSAGE.replace("must not", "No text field or JSON value may")
        + ".",
    )

    @app.exception_handler(SisuError)
    async def sisu_error(_: Request, exc: SisuError) -> JSONResponse:
        return JSONResponse(status_code=exc.http_status, content=exc.envelope())

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation_error(exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = HTTP_CODES.get(exc.status_code, "http_error")
        # 405 carries `Allow`: keep the headers Starlette put on the exception.
        return _error(exc.status_code, code, str(exc.detail), headers=exc.headers)

    # Input PostgreSQL refused that validation did not foresee: still the caller's input, and
    # the failed statement's transaction wrote nothing.
    @app.exception_handler(psycopg.DataError)
    @app.exception_handler(sqlalchemy.exc.DataError)
    async def data_error(_: Request, exc: Exception) -> JSONResponse:
        orig = getattr(exc, "orig", None) or exc
        return _error(
            400, "validation_error", f"the database refused a value: {' '.join(str(orig).split())}"
        )

    # Anything else: the envelope, never Starlette's plain-text "Internal Server Error". Routes'
    # errors are caught by CatchAll; this handler is the last resort for the middleware's own.
    @app.exception_handler(Exception)
    async def last_resort(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(status_code=500, content=unexpected(exc).envelope())

    # Added innermost first: on the wire the token is checked before a body byte is read, and
    # the body limit before any route runs.
    app.add_middleware(CatchAll)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes or settings.max_body_bytes)
    if api_token:
        app.add_middleware(BearerAuth, token=api_token)
    http_metrics = metrics.HttpMetrics()
    app.add_middleware(RequestMetrics, observe=http_metrics.observe, routes=app.router.routes)
    gauges = metrics.DatabaseGauges(
        backend.url,
        cache_seconds=settings.metrics_cache_seconds,
        dead_after_seconds=settings.worker_dead_after_seconds,
    )
    page = metrics.shim_page(gauges, http_metrics, app_version=backend.app_version)

    @app.get(
        "/healthz",
        response_model=HealthView,
        responses={503: {"model": HealthView, "description": "The database is down."}},
        openapi_extra={"security": []},
    )
    def healthz() -> JSONResponse:
        ok, body = health.health(backend, settings.worker_dead_after_seconds)
        return JSONResponse(status_code=200 if ok else 503, content=body)

    @app.get(
        "/metrics",
        response_class=Response,
        responses={
            200: {
                "content": {metrics.CONTENT_TYPE: {"schema": {"type": "string"}}},
                "description": "Prometheus text exposition format (version 0.0.4).",
            },
            **_errors(400),
        },
    )
    def get_metrics() -> Response:
        """Prometheus metrics: the requests this server answered, and gauges read from the
        database (cached for SISU_METRICS_CACHE_SECONDS); `sisu_database_up 0` and no database
        gauges when it cannot be read. The worker's admin port serves its own page."""
        return Response(metrics.render(page), media_type=metrics.CONTENT_TYPE)

    @app.post(
        "/intents",
        status_code=201,
        response_model=IntentCreated,
        responses=_errors(400, 409, 415),
        dependencies=JSON_BODY,
    )
    def create_intent(
        body: IntentCreate,
        idempotency_key: Annotated[
            str | None,
            Header(
                alias="Idempotency-Key",
                pattern=intents.IDEMPOTENCY_KEY_PATTERN,
                description="Same key and body: the same intent again (201, "
                "`Idempotent-Replayed: true`); same key, other body: 409 idempotency_conflict.",
            ),
        ] = None,
    ) -> Response:
        # A replay answers exactly as the first request did (201, same body), as Stripe and
        # draft-ietf-httpapi-idempotency-key-header do, so a retrying client needs no new case.
        created, replayed = intents.create_intent_once(
            backend, body, idempotency_key=idempotency_key
        )
        headers = {"Idempotent-Replayed": "true"} if replayed else None
        return Response(
            created.to_json(), status_code=201, media_type="application/json", headers=headers
        )

    @app.post(
        "/intents/{intent_id}/run",
        status_code=202,
        response_model=RunStarted,
        responses=_errors(400, 404, 409, 415),
        dependencies=JSON_BODY,
    )
    def run_intent(
        intent_id: IntentId, body: Annotated[RunRequest | None, Body()] = None
    ) -> Response:
        started = intents.start_run(backend, intent_id, body or RunRequest())
        return Response(started.to_json(), status_code=202, media_type="application/json")

    @app.get("/runs/{run_id}", response_model=RunView, responses=_errors(400, 404))
    def get_run(run_id: RunId) -> Response:
        return Response(views.get_run(backend, run_id).to_json(), media_type="application/json")

    @app.get("/runs/{run_id}/calls", response_model=list[CompilerCall], responses=_errors(400, 404))
    def list_calls(run_id: RunId) -> Response:
        calls = views.list_calls(backend, run_id)
        return _json("[" + ",".join(c.to_json() for c in calls) + "]")

    @app.get(
        "/runs/{run_id}/patch",
        responses={
            **_errors(400, 404, 409),
            200: {
                "content": {"text/x-diff": {"schema": {"type": "string"}}},
                "description": "The run's unified diff.",
            },
        },
    )
    def get_patch(run_id: RunId) -> Response:
        """The run's change as a unified diff against its intent's commit: it applies with
        `git apply` on the repository at that commit."""
        return Response(views.run_patch(backend, run_id), media_type="text/x-diff")

    @app.get("/runs", response_model=RunPage, responses=_errors(400))
    def list_runs(
        status: Annotated[RunStatus | None, Query(description="Only runs in this status.")] = None,
        limit: PageLimit = paging.DEFAULT_LIMIT,
        after: RunsAfter = None,
    ) -> Response:
        """Runs, newest first, a page at a time."""
        page = views.list_runs(backend, status=status, limit=limit, after=after)
        return _json(page.to_json())

    @app.get("/inbox", response_model=InboxPage, responses=_errors(400))
    def inbox(limit: PageLimit = paging.DEFAULT_LIMIT, after: InboxAfter = None) -> Response:
        """The runs waiting for a human (`waiting_input`), longest waiting first, a page at a
        time: each one's question, answer schema and time left. Answer with
        POST /runs/{run_id}/events."""
        return _json(human.inbox(backend, limit=limit, after=after).to_json())

    @app.post(
        "/runs/{run_id}/events",
        status_code=202,
        response_model=EventAccepted,
        responses=_errors(400, 404, 409, 415),
        dependencies=JSON_BODY,
    )
    def post_event(run_id: RunId, body: EventRequest) -> Response:
        return _json(human.send_event(backend, run_id, body).to_json(), 202)

    @app.post(
        "/runs/{run_id}/retry",
        status_code=202,
        response_model=RetryAccepted,
        responses=_errors(400, 404, 409),
    )
    def retry(run_id: RunId) -> Response:
        return _json(repair.retry_run(backend, run_id).to_json(), 202)

    @app.post(
        "/runs/{run_id}/cancel",
        status_code=202,
        response_model=CancelAccepted,
        responses=_errors(400, 404, 409),
    )
    def cancel(run_id: RunId) -> Response:
        return _json(repair.cancel_run(backend, run_id).to_json(), 202)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = honest_openapi(
                app, token_required=bool(api_token), caps=backend.queue_policy.describe()["caps"]
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def honest_openapi(app: FastAPI, *, token_required: bool, caps: dict[str, int]) -> dict[str, Any]:
    """FastAPI's document, corrected to what this server answers: validation errors are 400
    with the envelope (FastAPI documents 422 with its own shape, which is never sent), the
    bearer scheme is declared — required when the server has a token, optional otherwise —
    and a run's workload fields carry this server's caps as their maximum."""
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            operation.get("responses", {}).pop("422", None)
    components = schema.setdefault("components", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.get("schemas", {}).pop(name, None)
    components["securitySchemes"] = {
        "bearerAuth": {
            "type": "http",
            "scheme": "bearer",
            "description": "SISU_API_TOKEN; required on every route but /healthz when set.",
        }
    }
    workload = components.get("schemas", {}).get("Workload", {}).get("properties", {})
    for field, cap in caps.items():
        for branch in workload.get(field, {}).get("anyOf", []):
            if branch.get("type") == "integer":
                branch["maximum"] = cap
    schema["security"] = [{"bearerAuth": []}] if token_required else [{}, {"bearerAuth": []}]
    return schema


def _json(body: str, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type="application/json")
