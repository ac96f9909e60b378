"""FastAPI routes of the api-shim. Routes only: every decision is in `sisu.service`."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Body, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from sisu import __version__
from sisu.config import Settings
from sisu.contracts.base import error_details
from sisu.contracts.runs import (
    CancelAccepted,
    EventAccepted,
    EventRequest,
    IntentCreate,
    IntentCreated,
    RetryAccepted,
    RunRequest,
    RunStarted,
    RunSummary,
    RunView,
)
from sisu.errors import SisuError
from sisu.service import health, human, intents, repair, views
from sisu.service.backend import Backend


def _error(status: int, code: str, message: str, details: Any = None) -> JSONResponse:
    return JSONResponse(
        status_code=status, content={"error": code, "message": message, "details": details}
    )


def _validation_error(exc: RequestValidationError) -> JSONResponse:
    """400 invalid_json for a body that is not JSON, 400 validation_error with field details
    for one that does not match the contract."""
    errors = list(exc.errors())
    if any(err.get("type") == "json_invalid" for err in errors):
        return _error(400, "invalid_json", "request body is not valid JSON")
    message, details = error_details(errors)
    return _error(400, "validation_error", message, details)


def create_app(backend: Backend, settings: Settings, *, api_token: str | None = None) -> FastAPI:
    app = FastAPI(
        title="sisu api-shim",
        version=__version__,
        description="Submit intents, trigger their durable runs, read run state.",
    )

    @app.exception_handler(SisuError)
    async def sisu_error(_: Request, exc: SisuError) -> JSONResponse:
        return JSONResponse(status_code=exc.http_status, content=exc.envelope())

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation_error(exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error(exc.status_code, code, str(exc.detail))

    if api_token:

        @app.middleware("http")
        async def require_token(
            request: Request, call_next: Callable[[Request], Awaitable[Response]]
        ) -> Response:
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {api_token}".encode()):
                return _error(401, "unauthorized", "missing or wrong bearer token")
            return await call_next(request)

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        ok, body = health.health(backend, settings.worker_dead_after_seconds)
        return JSONResponse(status_code=200 if ok else 503, content=body)

    @app.post("/intents", status_code=201, response_model=IntentCreated)
    def create_intent(
        body: IntentCreate,
        idempotency_key: Annotated[
            str | None,
            Header(
                alias="Idempotency-Key",
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

    @app.post("/intents/{intent_id}/run", status_code=202, response_model=RunStarted)
    def run_intent(intent_id: str, body: Annotated[RunRequest | None, Body()] = None) -> Response:
        started = intents.start_run(backend, intent_id, body or RunRequest())
        return Response(started.to_json(), status_code=202, media_type="application/json")

    @app.get("/runs/{run_id}", response_model=RunView)
    def get_run(run_id: str) -> Response:
        return Response(views.get_run(backend, run_id).to_json(), media_type="application/json")

    @app.get("/runs", response_model=list[RunSummary])
    def list_runs(
        status: Annotated[str | None, Query()] = None,
        limit: Annotated[int, Query()] = 50,
    ) -> Response:
        runs = views.list_runs(backend, status=status, limit=limit)
        body = "[" + ",".join(r.to_json() for r in runs) + "]"
        return Response(body, media_type="application/json")

    @app.post("/runs/{run_id}/events", status_code=202, response_model=EventAccepted)
    def post_event(run_id: str, body: EventRequest) -> Response:
        return _json(human.send_event(backend, run_id, body).to_json(), 202)

    @app.post("/runs/{run_id}/retry", status_code=202, response_model=RetryAccepted)
    def retry(run_id: str) -> Response:
        return _json(repair.retry_run(backend, run_id).to_json(), 202)

    @app.post("/runs/{run_id}/cancel", status_code=202, response_model=CancelAccepted)
    def cancel(run_id: str) -> Response:
        return _json(repair.cancel_run(backend, run_id).to_json(), 202)

    return app


def _json(body: str, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type="application/json")
