"""Logs an operator can read (issue 16, item 4): a run that ends `retries_exceeded` adds one
WARNING line to a real worker's log, with the run id, step and code and no traceback (`sisu -v`
brings the traceback back); `--log-format json` / `SISU_LOG_FORMAT=json` make every line of
`sisu worker` and `sisu serve` a JSON object; the secrets the process knows (its database
password, its API token, a bearer token) are in no line."""

from __future__ import annotations

import json
import socket
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from sisu.drills.processes import WorkerProcess
from tests.support.cli import FAST_BACKOFF, fast_retry_env, run_sisu
from tests.support.db import scalar
from tests.support.polling import poll
from tests.support.runs import ANSWER, ASK_GOAL, fast_backend, start_intent, wait_run_status
from tests.support.serve import running_serve
from tests.support.workers import INTENT_QUEUE, wait_worker_ready

PASSWORD = "pw-" + uuid.uuid4().hex[:12]
API_TOKEN = "tok-" + uuid.uuid4().hex[:12]
BEARER = "brr-" + uuid.uuid4().hex[:12]
SECRETS = (PASSWORD, API_TOKEN, BEARER)
# The fault's kind is the operator's own text, and it is in the error message of the run: here
# it carries every secret, the way a pasted command line would.
LEAKY_KIND = f"net_timeout {PASSWORD} {API_TOKEN} Authorization: Bearer {BEARER}"
FAULTY = {"faults": {"ExecuteST": {"kind": LEAKY_KIND, "times": 3}}}


def with_password(url: str, password: str) -> str:
    """The same URL with a password in its user part (the test servers trust local users, so
    PostgreSQL accepts it and ignores it)."""
    parts = urlsplit(url)
    user, _, host = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{user or 'postgres'}:{password}@{host}"))


def active_workflows(url: str, executor_id: str) -> list[str]:
    found = scalar(
        url, "SELECT active_workflows FROM app.workers WHERE executor_id = %s", (executor_id,)
    )
    return list(found or [])


def lines_of(worker: WorkerProcess) -> list[str]:
    return worker.log_path.read_text(errors="replace").splitlines()


def run_to_retries_exceeded(url: str, worker: WorkerProcess) -> tuple[str, list[str]]:
    """A run that waits for a human, then fails ExecuteST until its attempts are spent; the
    lines its end added to the worker's log. Everything DBOS logs about a workflow it logs
    before the workflow leaves the worker's active set (`_execute_workflow_wthread`), so a
    heartbeat that listed the run and a later one that no longer does close the log."""
    wait_worker_ready(url, worker)
    poll("the worker's ready line", lambda: True if lines_of(worker) else None, timeout=30)
    before = len(lines_of(worker))
    with fast_backend(url) as backend:
        run_id = start_intent(backend, ASK_GOAL, inputs=FAULTY)
        wait_run_status(url, run_id, "waiting_input", worker=worker)
        poll(
            "a heartbeat listing the run",
            lambda: True if run_id in active_workflows(url, worker.executor_id) else None,
            timeout=30,
        )
        from sisu.contracts.runs import EventRequest
        from sisu.service import human

        human.send_event(backend, run_id, EventRequest(type="input", payload=ANSWER))
    wait_run_status(url, run_id, "retries_exceeded", worker=worker)
    poll(
        "a heartbeat without the run",
        lambda: True if run_id not in active_workflows(url, worker.executor_id) else None,
        timeout=30,
    )
    return run_id, lines_of(worker)[before:]


def logging_worker(url: str, tmp_path: Path, *args: str, cli_args: tuple[str, ...] = ()) -> Any:
    executor_id = f"logs-{uuid.uuid4().hex[:10]}"
    return WorkerProcess(
        url=with_password(url, PASSWORD),
        executor_id=executor_id,
        app_version="v1",
        queues=(INTENT_QUEUE,),
        log_path=tmp_path / "logs" / f"{executor_id}.log",
        extra_env={
            "SISU_HOME": str(tmp_path / "home"),
            "SISU_STEP_BACKOFF_SECONDS": FAST_BACKOFF,
            "SISU_HEARTBEAT_SECONDS": "0.5",
            "SISU_API_TOKEN": API_TOKEN,
        },
        extra_args=args,
        cli_args=cli_args,
        clean_env=True,
    )


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} in the log:\n{text}"


def test_an_expected_failure_is_one_warning_line_without_traceback(
    db_url: str, tmp_path: Path
) -> None:
    worker = logging_worker(db_url, tmp_path)
    try:
        worker.start()
        run_id, added = run_to_retries_exceeded(db_url, worker)
    finally:
        worker.kill()
    log = "\n".join(added)
    assert "Traceback" not in log, log
    assert len(added) <= 3, log
    # One line about the run (DBOS's own record of the workflow's error would name it too).
    [line] = [line for line in added if run_id in line]
    assert " WARNING " in line and " sisu.run: " in line, line
    for field in (f"run_id={run_id}", "step=ExecuteST", "code=retries_exceeded"):
        assert field in line.split(), (field, line)
    assert_no_secret(worker.log_path.read_text())
    assert "***" in line, line


def test_json_logs_are_one_object_per_line(db_url: str, tmp_path: Path) -> None:
    worker = logging_worker(db_url, tmp_path, "--log-format", "json")
    try:
        worker.start()
        run_id, added = run_to_retries_exceeded(db_url, worker)
    finally:
        worker.kill()
    objects = [json.loads(line) for line in lines_of(worker)]
    assert objects, "an empty log"
    for obj in objects:
        assert {"ts", "level", "logger", "message"} <= set(obj), obj
        assert "exception" not in obj, obj  # tracebacks only with -v
        assert obj["executor_id"] == worker.executor_id, obj
    [ready] = [o for o in objects if o["message"].startswith(f"worker {worker.executor_id} ready")]
    assert ready["logger"] == "sisu.worker"
    # One line about the run (DBOS's own record of the workflow's error would name it too).
    [outcome] = [o for o in map(json.loads, added) if run_id in json.dumps(o)]
    assert (outcome["level"], outcome["logger"]) == ("WARNING", "sisu.run"), outcome
    assert (outcome["step"], outcome["code"]) == ("ExecuteST", "retries_exceeded"), outcome
    assert len(added) <= 3, added
    assert_no_secret(worker.log_path.read_text())


def test_verbose_restores_the_traceback_and_still_masks_secrets(
    db_url: str, tmp_path: Path
) -> None:
    worker = logging_worker(db_url, tmp_path, cli_args=("-v",))
    try:
        worker.start()
        run_id, added = run_to_retries_exceeded(db_url, worker)
    finally:
        worker.kill()
    log = "\n".join(added)
    # DBOS's own record of the workflow's error, with the traceback that ends in the error.
    assert "Traceback (most recent call last)" in log, log
    assert "sisu.workflow.steps.errors.RetriesExhausted: ExecuteST: net_timeout ***" in log, log
    assert any(f"run_id={run_id}" in line.split() for line in added), log
    assert_no_secret(worker.log_path.read_text())


def invalid_http_request(port: int) -> bytes:
    """Bytes that are no HTTP request; uvicorn logs a warning before it answers 400."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    return answer


@pytest.mark.parametrize("verbose", [False, True], ids=["quiet", "verbose"])
def test_serve_json_logs_are_one_object_per_line(
    db_url: str, tmp_path: Path, verbose: bool
) -> None:
    env = fast_retry_env(
        with_password(db_url, PASSWORD),
        tmp_path / "home",
        SISU_LOG_FORMAT="json",
        SISU_API_TOKEN=API_TOKEN,
    )
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    log_path = tmp_path / "logs" / "serve.log"
    cli_args = ("-v",) if verbose else ()
    with running_serve(env, log_path, cli_args=cli_args) as server:
        assert server.wait_responding("/healthz", headers=headers).status_code == 200
        assert httpx.get(f"{server.base_url}/runs", headers=headers).status_code == 200
        # A secret in a request's path (a token pasted in the wrong place) is masked too.
        assert httpx.get(f"{server.base_url}/runs/{API_TOKEN}", headers=headers).status_code == 404
        assert invalid_http_request(server.port).startswith(b"HTTP/1.1 400")
        # A second shim on the same port: its error is a JSON line too.
        taken = run_sisu(["serve", "--port", str(server.port)], env, timeout=60)
    assert taken.exit_code == 1, taken
    [error] = [json.loads(line) for line in taken.stderr.splitlines()]
    assert (error["level"], error["code"]) == ("ERROR", "port_in_use"), error
    objects = [json.loads(line) for line in log_path.read_text().splitlines()]
    by_logger: dict[str, list[dict[str, Any]]] = {}
    for obj in objects:
        assert {"ts", "level", "logger", "message"} <= set(obj), obj
        by_logger.setdefault(obj["logger"], []).append(obj)
    [announce] = by_logger["sisu.api"]
    assert announce["message"].startswith(f"api-shim on http://127.0.0.1:{server.port}")
    assert [o["message"] for o in by_logger["uvicorn.error"] if o["level"] == "WARNING"] == [
        "Invalid HTTP request received."
    ]
    access = [
        (o["method"], o["path"], o["status_code"]) for o in by_logger.get("uvicorn.access", [])
    ]
    # uvicorn's access log only under -v, and then in the same format.
    assert (("GET", "/runs", 200) in access) is verbose, access
    assert (("GET", "/runs/***", 404) in access) is verbose, access
    assert_no_secret(log_path.read_text() + taken.stderr)


def test_an_unknown_log_format_is_refused(sisu_env: dict[str, str]) -> None:
    for args, env in (
        (["worker", "--log-format", "yaml"], sisu_env),
        (["serve"], {**sisu_env, "SISU_LOG_FORMAT": "xml"}),
    ):
        result = run_sisu(args, env, timeout=60)
        assert result.exit_code == 2, result
        [line] = result.stderr.splitlines()
        assert line.startswith("sisu: error[validation_error]: unknown log format"), line
