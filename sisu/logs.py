"""The log setup of sisu's long-running processes (`sisu worker`, `sisu serve`): one handler on
stderr for every logger (sisu's, DBOS's, uvicorn's), a text or JSON line per record, tracebacks
only when verbose, and known secrets masked in every line.

Standard library only: the CLI imports it before it knows whether the engine will be needed."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import quote, unquote, urlsplit

if TYPE_CHECKING:
    from sisu.config import Settings

FORMATS = ("text", "json")
# Fields a record may carry (`extra=` or the context filter), in the order they are shown.
FIELDS = (
    "run_id",
    "step",
    "code",
    "status",
    "workflow_id",
    "executor_id",
    "client",
    "method",
    "path",
    "status_code",
)
MASK = "***"
# A secret this short would mask ordinary words everywhere; the patterns below still catch it
# where it appears as a password or a token.
MIN_SECRET_LENGTH = 4
# Environment variables whose values are secrets wherever they appear (a provider's own API key,
# read when SISU_LLM_API_KEY is unset, or libpq's password).
_SECRET_ENV = re.compile(r"(?i)(^PGPASSWORD$|_API_KEY$|_TOKEN$|_PASSWORD$|_SECRET$)")
# `scheme://user:password@` in any URL.
_URL_PASSWORD = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^\s:/?#@]*:)[^\s@/]*(@)")
# `Authorization: Bearer abc`, `authorization=abc`, `"Authorization": "Basic abc"`.
_AUTHORIZATION = re.compile(
    r"(?i)(\bauthorization[\"']?\s*[:=]\s*[\"']?)((?:bearer|basic|token)\s+)?[^\s\"',;]+"
)
_BEARER = re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9._~+/=-]+")
# `password=…`, `api_key: …`, `token=…` (conninfo, query strings, key=value dumps).
_KEY_VALUE = re.compile(
    r"(?i)(\b[\w-]*(?:password|passwd|secret|api[_-]?key|token)[\"']?\s*[=:]\s*[\"']?)"
    r"(?!\*\*\*)[^\s\"'&,;)]+"
)
# uvicorn's access record: msg '%s - "%s %s HTTP/%s" %d' with these args.
_ACCESS_ARGS = ("client", "method", "path", "_http_version", "status_code")


class Redactor:
    """Masks the known secret values, and anything shaped like a password or a token, in a
    line of text. Never raises."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        values: set[str] = set()
        for secret in secrets:
            # As given, decoded (a password from a URL) and encoded (a value put in a URL).
            for form in (secret, unquote(secret), quote(secret, safe="")):
                if form and len(form) >= MIN_SECRET_LENGTH:
                    values.add(form)
        # Longest first: a secret that contains another is masked whole.
        ordered = sorted(values, key=len, reverse=True)
        self._known = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def __call__(self, text: str) -> str:
        try:
            if self._known is not None:
                text = self._known.sub(MASK, text)
            text = _URL_PASSWORD.sub(lambda m: f"{m.group(1)}{MASK}{m.group(2)}", text)
            text = _AUTHORIZATION.sub(lambda m: f"{m.group(1)}{m.group(2) or ''}{MASK}", text)
            text = _BEARER.sub(lambda m: f"{m.group(1)}{MASK}", text)
            return _KEY_VALUE.sub(lambda m: f"{m.group(1)}{MASK}", text)
        except Exception:
            return MASK


def known_secrets(
    settings: Settings | None = None, environ: dict[str, str] | None = None
) -> list[str]:
    """The secret values this process knows: its database password, API token, model API key
    and webhook token, and every `*_API_KEY`/`*_TOKEN`/`*_PASSWORD`/`*_SECRET` variable."""
    env = os.environ if environ is None else environ
    found = [v for k, v in env.items() if v and _SECRET_ENV.search(k)]
    urls = [v for k, v in env.items() if v and k.upper().endswith("DATABASE_URL")]
    if settings is not None:
        if settings.api_token:
            found.append(settings.api_token)
        for secret in (settings.llm_api_key, settings.webhook_token):
            if secret is not None:
                found.append(secret.get_secret_value())
        if settings.database_url:
            urls.append(settings.database_url)
    for url in urls:
        password = _password_of(url)
        if password:
            found.append(password)
    return found


def _password_of(url: str) -> str | None:
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    if password:
        return password
    match = re.search(r"(?i)\bpassword\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", url)
    return match.group(1).strip("'") if match else None


def _one_line(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\n", "\\n")


def _error_summary(record: logging.LogRecord) -> str | None:
    """`Type: first line of the message` of the record's exception."""
    exc = record.exc_info[1] if record.exc_info else None
    if exc is None:
        return None
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """The record's structured fields, in FIELDS order; a workflow id equal to the run id is
    said once."""
    values = {f: getattr(record, f) for f in FIELDS if getattr(record, f, None) is not None}
    args = record.args
    if record.name == "uvicorn.access" and isinstance(args, tuple) and len(args) == 5:
        for key, value in zip(_ACCESS_ARGS, args, strict=True):
            if not key.startswith("_"):
                values.setdefault(key, value)
    if values.get("workflow_id") is not None and values.get("workflow_id") == values.get("run_id"):
        del values["workflow_id"]
    return {f: values[f] for f in FIELDS if f in values}


class _Formatter(logging.Formatter):
    def __init__(self, redact: Redactor, *, verbose: bool, hidden: Iterable[str] = ()) -> None:
        super().__init__()
        self.redact = redact
        self.verbose = verbose
        # Fields every line of this process carries (its executor id): a text line leaves them
        # out, a JSON line keeps them for whoever aggregates logs of many processes.
        self.hidden = set(hidden)

    @staticmethod
    def timestamp(record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        return ts.replace("+00:00", "Z")

    def traceback(self, record: logging.LogRecord) -> str | None:
        """The full traceback (and stack), only when verbose."""
        if not self.verbose:
            return None
        parts = []
        if record.exc_info and record.exc_info[0] is not None:
            parts.append(self.formatException(record.exc_info))
        if record.stack_info:
            parts.append(self.formatStack(record.stack_info))
        return "\n".join(parts) or None


class TextFormatter(_Formatter):
    """`2026-01-02T03:04:05.678Z WARNING sisu.run: message key=value …`: one line per record,
    and the traceback below it only when verbose."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [
            self.timestamp(record),
            f"{record.levelname:<7}",
            f"{record.name}:",
            _one_line(record.getMessage()),
        ]
        fields = {k: v for k, v in fields_of(record).items() if k not in self.hidden}
        error = _error_summary(record)
        if error is not None:
            fields["error"] = error
        for key, value in fields.items():
            shown = str(value)
            if not shown or any(c in shown for c in ' ="\\\n'):
                shown = json.dumps(shown)
            parts.append(f"{key}={shown}")
        line = " ".join(parts)
        tb = self.traceback(record)
        if tb is not None:
            line = f"{line}\n{tb}"
        elif error is not None and record.levelno >= logging.ERROR:
            line = f"{line} (traceback: run with sisu -v)"
        return self.redact(line)


class JsonFormatter(_Formatter):
    """One JSON object per line: ts, level, logger, message, the record's fields, `error` when
    it carries an exception, and `exception` (the traceback) only when verbose."""

    def format(self, record: logging.LogRecord) -> str:
        obj: dict[str, Any] = {
            "ts": self.timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **fields_of(record),
        }
        error = _error_summary(record)
        if error is not None:
            obj["error"] = error
        tb = self.traceback(record)
        if tb is not None:
            obj["exception"] = tb
        # Masked value by value: JSON escaping could hide a secret from a mask applied after it.
        clean = {k: self.redact(v) if isinstance(v, str) else v for k, v in obj.items()}
        return json.dumps(clean, default=str, ensure_ascii=False)


class ContextFilter(logging.Filter):
    """Adds the process's own fields (its executor id) and, inside a DBOS workflow, the
    workflow's id to every record that does not carry them already."""

    def __init__(self) -> None:
        super().__init__()
        self.static: dict[str, str] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in self.static.items():
            if getattr(record, key, None) is None:
                setattr(record, key, value)
        if getattr(record, "workflow_id", None) is None:
            workflow_id = _current_workflow_id()
            if workflow_id:
                record.workflow_id = workflow_id
        return True


def _current_workflow_id() -> str | None:
    # Only where DBOS is loaded already (the worker): a log line never imports the engine.
    dbos = sys.modules.get("dbos")
    engine = getattr(dbos, "DBOS", None)  # None while dbos itself is being imported
    if engine is None:
        return None
    try:
        workflow_id = engine.workflow_id  # public: None outside a workflow or step
    except Exception:
        return None
    return str(workflow_id) if workflow_id else None


class _Setup:
    handler: logging.Handler | None = None
    context: ContextFilter | None = None
    fmt: str | None = None
    verbose: bool = False


_setup = _Setup()
# Loggers that bring their own handlers or levels: their records go through ours instead.
_ROUTED = ("dbos", "uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")
# Chatty at INFO (a line per HTTP request the worker makes): shown only when verbose.
_QUIET_UNLESS_VERBOSE = ("httpx", "httpx2", "httpcore", "httpcore2")


def setup(
    fmt: str = "text",
    *,
    verbose: bool = False,
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
) -> logging.Handler:
    """Route every log record of this process through one handler on `stream` (stderr). Called
    again, it replaces the handler it installed before."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown log format {fmt!r}")
    root = logging.getLogger()
    if _setup.handler is not None:
        root.removeHandler(_setup.handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    context = ContextFilter()
    if _setup.context is not None:
        context.static.update(_setup.context.static)
    handler.addFilter(context)
    formatter_class = JsonFormatter if fmt == "json" else TextFormatter
    handler.setFormatter(formatter_class(Redactor(secrets), verbose=verbose, hidden=context.static))
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    for name in _ROUTED:
        logger = logging.getLogger(name)
        # DBOS adds its own console handler at DBOS() unless the logger has one already: a
        # NullHandler keeps it out, and the records reach the root handler like any other.
        logger.handlers = [logging.NullHandler()]
        logger.propagate = True
    for name in _QUIET_UNLESS_VERBOSE:
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)
    logging.captureWarnings(True)
    threading.excepthook = _log_thread_exception
    _setup.handler, _setup.context, _setup.fmt, _setup.verbose = handler, context, fmt, verbose
    return handler


def bind(**fields: str) -> None:
    """Fields every later record of this process carries (e.g. `executor_id`)."""
    if _setup.context is None or _setup.handler is None:
        return
    _setup.context.static.update(fields)
    formatter = _setup.handler.formatter
    if isinstance(formatter, _Formatter):
        formatter.hidden.update(fields)


def active_format() -> str | None:
    """The format `setup` installed in this process, or None when it was never called."""
    return _setup.fmt


def verbose() -> bool:
    return _setup.verbose


def _log_thread_exception(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    exc_info = (args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback)
    logging.getLogger("sisu").error("uncaught exception in thread %s", name, exc_info=exc_info)
