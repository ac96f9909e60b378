"""The `http` executor: each task of a run POSTed to a webhook with an idempotency key, and every
delivery recorded in `app.deliveries`, so a task the receiver accepted is never sent again."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
from psycopg.rows import dict_row

from sisu import __version__, metrics
from sisu.db.queries import q
from sisu.db.url import sqlalchemy_url
from sisu.errors import ValidationFailed
from sisu.workflow.steps.errors import DeliveryRejected, TransientStepError
from sisu.workflow.steps.ports import Work

STEP_ID = "ExecuteST"
# What of the receiver's answer is kept: enough to read its error, never a whole page.
RESPONSE_ROW_CHARS = 2000
RESPONSE_MESSAGE_CHARS = 300
# The most bytes read from an answer: a receiver that streams a huge body cannot fill memory.
RESPONSE_READ_BYTES = 64 * 1024
# Statuses worth the same request again later: the receiver timed out, is throttling, or broke.
TRANSIENT_STATUSES = frozenset({408, 429})
_MASK = "***"


def idempotency_key(run_id: str, task_key: str) -> str:
    """The key a task is delivered under, in the header and in `app.deliveries`."""
    return f"{run_id}:{STEP_ID}:{task_key}"


def without_userinfo(url: str) -> str:
    """The URL without `user:password@`: what is recorded, and what errors may name."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _checked_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationFailed(
            f"SISU_WEBHOOK_URL={without_userinfo(url)!r} is not an http:// or https:// URL "
            "with a host",
            details=[{"field": "SISU_WEBHOOK_URL"}],
        )
    return url


def _checked_token(token: str | None) -> str | None:
    if not token:
        return None
    # A header value with a space or a control character would fail every request in the
    # HTTP library, as a transport error retried until the run runs out of attempts.
    if not all(33 <= ord(c) <= 126 for c in token):
        raise ValidationFailed(
            "SISU_WEBHOOK_TOKEN must be visible ASCII characters without spaces",
            details=[{"field": "SISU_WEBHOOK_TOKEN"}],
        )
    return token


def _outcome(status: int) -> str:
    """A delivery's outcome label: delivered (2xx), transient (retried), rejected (for good)."""
    if 200 <= status < 300:
        return "delivered"
    return "transient" if status in TRANSIENT_STATUSES or status >= 500 else "rejected"


class HttpExecutor:
    """An `OutsideExecutor`. For each task, in order: skip it when `app.deliveries` says it was
    delivered (a 2xx), else count the attempt, POST it, and record the answer. The database is
    reached in short autocommit statements on a small pool of its own; no connection is held
    while a request is in flight."""

    name = "http"
    uses_workspace = False

    def __init__(
        self, url: str, token: str | None, db_url: str, timeout_seconds: float = 30
    ) -> None:
        import sqlalchemy as sa

        self._url = _checked_url(url)
        self._recorded_url = without_userinfo(url)
        self._token = _checked_token(token)
        # Everything that could leak into a row, an error or an outcome is scrubbed of these:
        # the token, and a password in the URL (a receiver may echo either back).
        self._secrets = [s for s in (self._token, urlsplit(url).password) if s]
        self._timeout = timeout_seconds
        # Each statement is atomic on its own: autocommit, and a connection only for the
        # statement's length. Two stay open; a burst of runs waits its turn for milliseconds.
        # Pre-ping: a pooled connection may have died during a long request (a database
        # restart), and failing the answer's record would send the accepted task again.
        self._engine = sa.create_engine(
            sqlalchemy_url(db_url),
            pool_size=2,
            max_overflow=2,
            pool_pre_ping=True,
            isolation_level="AUTOCOMMIT",
        )

    @staticmethod
    def check(url: str, token: str | None) -> None:
        """Raise the validation_error the settings would fail with, before a worker starts."""
        _checked_url(url)
        _checked_token(token)

    def close(self) -> None:
        self._engine.dispose()

    @contextmanager
    def _cursor(self) -> Iterator[psycopg.Cursor[dict[str, Any]]]:
        with self._engine.connect() as conn:
            driver = conn.connection.driver_connection
            assert isinstance(driver, psycopg.Connection)
            with driver.cursor(row_factory=dict_row) as cur:
                yield cur

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, _MASK)
        return text

    def _headers(self, key: str) -> dict[str, str]:
        headers = {
            "Idempotency-Key": key,
            "Content-Type": "application/json",
            "User-Agent": f"sisu/{__version__}",
        }
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    def _send_url(self) -> str:
        # With a token, the bearer header is the credential: userinfo in the URL would make
        # the HTTP library replace it with basic auth.
        return self._recorded_url if self._token else self._url

    # -- the port ----------------------------------------------------------------------------

    def perform(self, work: Work) -> dict[str, Any]:
        keys = [idempotency_key(work.run_id, str(t["taskKey"])) for t in work.tasks]
        with self._cursor() as cur:
            known = {
                r["idempotency_key"]: r
                for r in cur.execute(q("deliveries_lookup"), {"keys": keys}).fetchall()
            }
        deliveries = []
        with httpx.Client(timeout=self._timeout, follow_redirects=False) as client:
            for task, key in zip(work.tasks, keys, strict=True):
                task_key = str(task["taskKey"])
                earlier = known.get(key)
                if earlier is not None and earlier["delivered_at"] is not None:
                    status, new = int(earlier["status_code"]), False
                else:
                    status, new = self._deliver(client, work.run_id, task, key), True
                    # A task key listed twice is delivered once.
                    known[key] = {"status_code": status, "delivered_at": True}
                deliveries.append(
                    {"taskKey": task_key, "idempotencyKey": key, "statusCode": status, "new": new}
                )
        return {"deliveries": deliveries}

    def _deliver(self, client: httpx.Client, run_id: str, task: dict[str, Any], key: str) -> int:
        """POST one task; its 2xx status, or the error that fails or retries the step."""
        task_key = str(task["taskKey"])
        body = json.dumps({"runId": run_id, "taskKey": task_key, "payload": task.get("payload")})
        # Counted before sending: a worker killed while the request is in flight still shows
        # the attempt, and the repeat after recovery shows as attempts = 2.
        with self._cursor() as cur:
            cur.execute(
                q("delivery_attempt"),
                {
                    "key": key,
                    "run_id": run_id,
                    "task_key": task_key,
                    "executor": self.name,
                    "url": self._recorded_url,
                },
            )
        try:
            status, answer = self._post(client, key, body.encode())
        except httpx.TimeoutException as exc:
            metrics.delivery(self.name, "timeout")
            raise TransientStepError(
                f"webhook timed out after {self._timeout:g}s delivering task {task_key} "
                f"({type(exc).__name__})"
            ) from None
        except httpx.TransportError as exc:
            metrics.delivery(self.name, "unreachable")
            raise TransientStepError(
                f"webhook unreachable delivering task {task_key}: {self._one_line(exc)}"
            ) from None
        delivered = 200 <= status < 300
        metrics.delivery(self.name, _outcome(status))
        with self._cursor() as cur:
            cur.execute(
                q("delivery_answered"),
                {
                    "key": key,
                    "status_code": status,
                    "response": answer[:RESPONSE_ROW_CHARS],
                    "delivered": delivered,
                },
            )
        if delivered:
            return status
        excerpt = " ".join(answer.split())[:RESPONSE_MESSAGE_CHARS] or "(empty answer)"
        if status in TRANSIENT_STATUSES or status >= 500:
            raise TransientStepError(f"webhook answered {status} to task {task_key}: {excerpt}")
        # Any other 4xx (and a 1xx or 3xx, which a webhook has no business answering): the same
        # request would get the same answer until someone fixes the receiver or the task.
        raise DeliveryRejected(f"{status}: {excerpt} (task {task_key})")

    def _post(self, client: httpx.Client, key: str, body: bytes) -> tuple[int, str]:
        """The receiver's status and the start of its answer, scrubbed of every secret."""
        with client.stream("POST", self._send_url(), content=body, headers=self._headers(key)) as r:
            data = bytearray()
            try:
                for chunk in r.iter_bytes():
                    data += chunk
                    if len(data) >= RESPONSE_READ_BYTES:
                        break
                text = data.decode("utf-8", errors="replace")
            except httpx.DecodingError:
                text = "(an answer its Content-Encoding does not decode)"
        # PostgreSQL text cannot hold NUL.
        return r.status_code, self._scrub(text.replace("\x00", ""))

    def _one_line(self, exc: BaseException) -> str:
        text = " ".join(str(exc).split()) or type(exc).__name__
        return self._scrub(f"{type(exc).__name__}: {text}")
