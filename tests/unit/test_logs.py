"""sisu.logs: the text and JSON lines, tracebacks only when verbose, the redaction of secrets in
every line, the secrets a process knows, and one handler for sisu's, DBOS's and uvicorn's
loggers."""

from __future__ import annotations

import io
import json
import logging
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from sisu import logs
from sisu.config import Settings

TS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


def record(
    msg: str = "hello %s",
    args: Any = ("world",),
    *,
    name: str = "sisu.test",
    level: int = logging.INFO,
    exc: BaseException | None = None,
    **extra: Any,
) -> logging.LogRecord:
    exc_info = None
    if exc is not None:
        try:
            raise exc
        except BaseException:
            exc_info = sys.exc_info()
    r = logging.LogRecord(name, level, "x.py", 1, msg, args, exc_info)
    for key, value in extra.items():
        setattr(r, key, value)
    return r


def text(r: logging.LogRecord, *, verbose: bool = False, secrets: tuple[str, ...] = ()) -> str:
    return logs.TextFormatter(logs.Redactor(secrets), verbose=verbose).format(r)


def as_json(
    r: logging.LogRecord, *, verbose: bool = False, secrets: tuple[str, ...] = ()
) -> dict[str, Any]:
    line = logs.JsonFormatter(logs.Redactor(secrets), verbose=verbose).format(r)
    assert "\n" not in line
    parsed: dict[str, Any] = json.loads(line)
    return parsed


def test_a_text_line_has_time_level_logger_message_and_fields() -> None:
    line = text(record(level=logging.WARNING, run_id="r-1", step="ExecuteST", code="boom"))
    ts, level, logger, *rest = line.split(" ")
    assert __import__("re").fullmatch(TS, ts), ts
    assert (level, logger) == ("WARNING", "sisu.test:")
    assert " ".join(rest) == "hello world run_id=r-1 step=ExecuteST code=boom"


def test_a_text_line_is_one_line_and_quotes_values_with_spaces() -> None:
    line = text(record("two\nlines", None, code="a b"))
    assert "\n" not in line
    assert line.endswith('two\\nlines code="a b"'), line


def test_an_exception_is_one_line_unless_verbose() -> None:
    r = record("failed", None, level=logging.ERROR, exc=ValueError("bad\nvalue"))
    quiet = text(r)
    assert "\n" not in quiet and "Traceback" not in quiet
    assert 'error="ValueError: bad value"' in quiet
    assert quiet.endswith("(traceback: run with sisu -v)")
    loud = text(r, verbose=True)
    assert "Traceback (most recent call last)" in loud
    assert loud.rstrip().endswith("ValueError: bad\nvalue"), loud


def test_a_json_line_carries_the_fields_and_the_traceback_only_when_verbose() -> None:
    r = record(level=logging.WARNING, exc=RuntimeError("x"), run_id="r-1", step="S", code="c")
    quiet = as_json(r)
    assert list(quiet) == ["ts", "level", "logger", "message", "run_id", "step", "code", "error"]
    assert quiet["level"] == "WARNING" and quiet["message"] == "hello world"
    assert quiet["error"] == "RuntimeError: x"
    loud = as_json(r, verbose=True)
    assert loud["exception"].startswith("Traceback (most recent call last)")
    assert loud["exception"].rstrip().endswith("RuntimeError: x")


def test_a_workflow_id_that_is_the_run_id_is_said_once() -> None:
    assert "workflow_id" not in as_json(record(run_id="r-1", workflow_id="r-1"))
    assert as_json(record(workflow_id="w-2"))["workflow_id"] == "w-2"


def test_inside_a_workflow_a_record_carries_its_id(monkeypatch: pytest.MonkeyPatch) -> None:
    class FakeDBOS:
        workflow_id: str | None = "wf-9"

    monkeypatch.setitem(sys.modules, "dbos", type("fake_dbos", (), {"DBOS": FakeDBOS}))
    context = logs.ContextFilter()
    context.static["executor_id"] = "w-1"
    inside = record()
    assert context.filter(inside) is True
    assert (getattr(inside, "workflow_id"), getattr(inside, "executor_id")) == ("wf-9", "w-1")  # noqa: B009
    FakeDBOS.workflow_id = None
    outside = record()
    context.filter(outside)
    assert not hasattr(outside, "workflow_id")
    assert as_json(inside)["workflow_id"] == "wf-9"


def test_uvicorn_access_records_become_fields() -> None:
    r = record(
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/runs", "1.1", 200),
        name="uvicorn.access",
    )
    obj = as_json(r)
    assert (obj["client"], obj["method"], obj["path"], obj["status_code"]) == (
        "127.0.0.1:5000", "GET", "/runs", 200,
    )  # fmt: skip


SECRET = "s3cr3t-value"


@pytest.mark.parametrize(
    ("line", "gone"),
    [
        (f"connecting to postgresql://app:{SECRET}@db:5432/sisu", SECRET),
        ("connecting to postgresql://app:other-pw@db:5432/sisu", "other-pw"),
        ("sent Authorization: Bearer abc.DEF-123", "abc.DEF-123"),
        ('headers {"authorization": "Basic dXNlcjpwdw=="}', "dXNlcjpwdw=="),
        ("a bearer xyz987 in a message", "xyz987"),
        ("host=db password=hunter22 dbname=x", "hunter22"),
        ("url?api_key=k-123&x=1", "k-123"),
        ('{"webhook_token": "wt-456"}', "wt-456"),
        (f"the value {SECRET} alone", SECRET),
        ("percent-encoded s3cr3t%2Fvalue too", "s3cr3t%2Fvalue"),
    ],
)
def test_secrets_are_masked_in_text(line: str, gone: str) -> None:
    redact = logs.Redactor([SECRET, "s3cr3t/value"])
    masked = redact(line)
    assert gone not in masked, masked
    assert logs.MASK in masked


def test_ordinary_lines_are_left_alone() -> None:
    redact = logs.Redactor([SECRET])
    for line in (
        "worker w ready: admin http://127.0.0.1:3002/healthz",
        "cap_tokens 500000 and maxTokens=20 stay",
        "Idempotency-Key: run:ExecuteST:task-1",
        "postgresql://postgres@/sisu?host=/tmp/x&port=5432",
    ):
        assert redact(line) == line


def test_a_short_secret_is_masked_only_where_it_is_shaped_like_one() -> None:
    redact = logs.Redactor(["ab"])
    assert redact("abc ab") == "abc ab"
    assert redact("postgresql://u:ab@h/d") == "postgresql://u:***@h/d"


def test_json_masks_a_secret_that_json_would_escape() -> None:
    tricky = 'q"uo\\te-secret'
    obj = as_json(record("value %s", (tricky,)), secrets=(tricky,))
    assert obj["message"] == "value ***"
    text_line = text(record("value %s", (tricky,)), secrets=(tricky,))
    assert tricky not in text_line


def test_tracebacks_are_masked_too() -> None:
    r = record("failed", None, level=logging.ERROR, exc=ValueError(f"with {SECRET}"))
    assert SECRET not in text(r, verbose=True, secrets=(SECRET,))
    assert SECRET not in json.dumps(as_json(r, verbose=True, secrets=(SECRET,)))


def test_known_secrets_come_from_the_settings_and_the_environment() -> None:
    s = Settings(
        database_url="postgresql://app:db-pass%40x@db/sisu",
        api_token="api-tok",
        llm_api_key=SecretStr("llm-key"),
        webhook_token=SecretStr("hook-tok"),
    )
    found = logs.known_secrets(
        s,
        {
            "OPENAI_API_KEY": "openai-key",
            "GITHUB_TOKEN": "gh-tok",
            "PGPASSWORD": "pg-pass",
            "SOME_DATABASE_URL": "postgresql://u:env-db-pass@h/d",
            "HOME": "/root",
        },
    )
    for secret in (
        "db-pass%40x", "api-tok", "llm-key", "hook-tok", "openai-key", "gh-tok", "pg-pass",
        "env-db-pass",
    ):  # fmt: skip
        assert secret in found, secret
    assert "/root" not in found
    # The decoded form of a percent-encoded password is masked as well.
    assert logs.Redactor(found)("db-pass@x") == logs.MASK


def test_a_conninfo_password_is_known() -> None:
    s = Settings(database_url="host=db user=app password='p w-1' dbname=sisu")
    assert "p w-1" in logs.known_secrets(s, {})


@pytest.fixture
def clean_logging() -> Iterator[io.StringIO]:
    """The process's logging as it was, after a test that calls `logs.setup`."""
    root = logging.getLogger()
    saved_root = (list(root.handlers), root.level)
    saved = {
        name: (list(logging.getLogger(name).handlers), logging.getLogger(name).propagate)
        for name in ("dbos", "uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")
    }
    levels = {name: logging.getLogger(name).level for name in logs._QUIET_UNLESS_VERBOSE}
    keys = ("handler", "context", "fmt", "verbose")
    saved_setup = {key: getattr(logs._setup, key) for key in keys}
    hook = threading.excepthook
    stream = io.StringIO()
    try:
        yield stream
    finally:
        root.handlers, root.level = saved_root[0], saved_root[1]
        for name, (handlers, propagate) in saved.items():
            logging.getLogger(name).handlers = handlers
            logging.getLogger(name).propagate = propagate
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        for key, value in saved_setup.items():
            setattr(logs._setup, key, value)
        logging.captureWarnings(False)
        threading.excepthook = hook


def test_setup_routes_dbos_and_uvicorn_through_one_handler(clean_logging: io.StringIO) -> None:
    logs.setup("json", secrets=[SECRET], stream=clean_logging)
    logs.bind(executor_id="w-1")
    assert logs.active_format() == "json"
    # DBOS adds its own console handler at DBOS() only to a logger without handlers.
    assert logging.getLogger("dbos").handlers
    logging.getLogger("dbos").warning("from dbos %s", SECRET)
    logging.getLogger("uvicorn.error").warning("from uvicorn")
    logging.getLogger("sisu.worker").info("from sisu")
    objects = [json.loads(line) for line in clean_logging.getvalue().splitlines()]
    assert [(o["logger"], o["message"]) for o in objects] == [
        ("dbos", "from dbos ***"),
        ("uvicorn.error", "from uvicorn"),
        ("sisu.worker", "from sisu"),
    ]
    assert {o["executor_id"] for o in objects} == {"w-1"}


def test_setup_again_replaces_the_handler(clean_logging: io.StringIO) -> None:
    logs.setup("json", stream=io.StringIO())
    logs.bind(executor_id="w-1")
    logs.setup("text", stream=clean_logging)
    logging.getLogger("sisu.worker").warning("once")
    [line] = clean_logging.getvalue().splitlines()
    # The process's own fields survive; a text line leaves them out.
    assert line.endswith("WARNING sisu.worker: once"), line


def test_a_thread_that_dies_is_one_log_line(clean_logging: io.StringIO) -> None:
    logs.setup("text", stream=clean_logging)

    def boom() -> None:
        raise RuntimeError("thread broke")

    t = threading.Thread(target=boom, name="doomed")
    t.start()
    t.join()
    [line] = clean_logging.getvalue().splitlines()
    assert "uncaught exception in thread doomed" in line
    assert 'error="RuntimeError: thread broke"' in line


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log format"):
        logs.setup("yaml")
