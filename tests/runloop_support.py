"""Real processes for the intent run-loop tests: `sisu worker` children, a `sisu serve` child on a
free port, polling helpers, and the RunView normaliser used by the golden-file test."""

from __future__ import annotations

import hashlib
import re
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
from psycopg import sql

from sisu.drills.processes import WorkerProcess
from tests.helpers import SISU, scalar

T = TypeVar("T")

INTENT_QUEUE = "sisu-intents"
STEP_IDS = ["CompileST", "ApplyPatchST", "DecideST", "ExecuteST"]
# DESIGN.md, Interfaces: the RunView and step key order is part of the contract; the queue-policy
# issue added the run's lane and priority after traceId ("visible in RunView"); the live-compiler
# issue added `compiler: {name, model}` (which compiler planned the run) after them.
DESIGN_RUNVIEW_KEYS = [
    "runId",
    "intentId",
    "workflowId",
    "status",
    "nextAction",
    "lastStep",
    "retryCount",
    "traceId",
    "lane",
    "priority",
    "compiler",
    "steps",
    "artifacts",
    "createdAt",
    "updatedAt",
]
STEP_KEYS = ["stepId", "attempt", "phase", "output", "error", "startedAt", "finishedAt"]


def runview_keys() -> list[str]:
    """The wire keys of the RunView model, in its declared order."""
    from sisu.contracts.runs import RunView

    return [field.alias or name for name, field in RunView.model_fields.items()]


def assert_runview_shape(view: dict[str, Any]) -> None:
    """A RunView on the wire: the model's keys in the model's order, DESIGN.md's keys among them
    in DESIGN.md's order, and every step with exactly the step keys in order. (Whether the model
    has *only* DESIGN.md's keys is checked once, in tests/unit/test_contracts.py.)"""
    keys = list(view)
    assert keys == runview_keys(), keys
    assert [k for k in keys if k in DESIGN_RUNVIEW_KEYS] == DESIGN_RUNVIEW_KEYS, keys
    for step in view["steps"]:
        assert list(step) == STEP_KEYS, step


ERROR_KEYS = {"error", "message", "details"}
COUNTED_TABLES = ["app.intents", "app.runs", "dbos.workflow_status"]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def poll(what: str, probe: Callable[[], T | None], *, timeout: float, interval: float = 0.05) -> T:
    """Call `probe` until it returns something other than None; AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


# --- workers -------------------------------------------------------------------------------


def worker_home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@contextmanager
def running_worker(url: str, tmp_path: Path, *, name: str = "rl") -> Iterator[WorkerProcess]:
    """A real `sisu worker` on the intent queue, stopped (SIGTERM, then SIGKILL) at exit."""
    executor_id = f"{name}-{uuid.uuid4().hex[:10]}"
    worker = WorkerProcess(
        url=url,
        executor_id=executor_id,
        app_version="v1",
        queues=(INTENT_QUEUE,),
        log_path=tmp_path / "logs" / f"{executor_id}.log",
        extra_env={"SISU_HOME": str(worker_home(tmp_path))},
    )
    try:
        worker.start()
        yield worker
    finally:
        worker.stop()


def run_status(url: str, run_id: str) -> str | None:
    value = scalar(url, "SELECT status FROM app.runs WHERE id = %s", (run_id,))
    return None if value is None else str(value)


def wait_run_status(
    url: str,
    run_id: str,
    want: str = "succeeded",
    *,
    timeout: float = 60,
    worker: WorkerProcess | None = None,
) -> str:
    """Wait until app.runs says `want`; fail at once on another terminal status or a dead worker."""
    terminal = {"succeeded", "failed", "canceled", "retries_exceeded"}

    def probe() -> str | None:
        status = run_status(url, run_id)
        if status == want:
            return status
        if status in terminal:
            raise AssertionError(f"run {run_id} ended {status}, wanted {want}")
        if worker is not None and not worker.alive():
            raise AssertionError(
                f"worker {worker.executor_id} died; log tail:\n{worker.log_tail()}"
            )
        return None

    return poll(f"run {run_id} to be {want}", probe, timeout=timeout)


def wait_workflow_status(
    url: str, workflow_id: str, want: str = "SUCCESS", *, timeout: float = 30
) -> str:
    """Wait until dbos.workflow_status says `want`. The run's last step commits `succeeded` into
    app.runs a moment before DBOS records the workflow's own completion, so read both."""

    def probe() -> str | None:
        status = scalar(
            url, "SELECT status FROM dbos.workflow_status WHERE workflow_uuid = %s", (workflow_id,)
        )
        return want if status == want else None

    return poll(f"workflow {workflow_id} to be {want}", probe, timeout=timeout)


def wait_run_done(
    url: str, run_id: str, *, worker: WorkerProcess | None = None, timeout: float = 60
) -> None:
    """The run succeeded in app.runs and its workflow is SUCCESS in dbos.workflow_status."""
    wait_run_status(url, run_id, "succeeded", worker=worker, timeout=timeout)
    wait_workflow_status(url, run_id, "SUCCESS")


# --- databases -----------------------------------------------------------------------------


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def clone_template(admin_url: str, template: str, name: str | None = None) -> tuple[str, str]:
    """CREATE DATABASE … TEMPLATE: returns (name, url)."""
    name = name or f"sisu_rl_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        )
    return name, with_database(admin_url, name)


def drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


# --- the api-shim --------------------------------------------------------------------------


class ServeProcess:
    """A real `sisu serve` child; its output goes to a file, never to the test's terminal."""

    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        *,
        host: str = "127.0.0.1",
        cli_args: tuple[str, ...] = (),
    ) -> None:
        self.env = env
        self.host = host
        self.cli_args = cli_args  # options of `sisu` itself, before `serve` (`-v`)
        self.port = free_port("0.0.0.0" if host == "0.0.0.0" else host)
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServeProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [SISU, *self.cli_args, "serve", "--host", self.host, "--port", str(self.port)],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        return self

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def wait_responding(
        self, path: str = "/healthz", headers: dict[str, str] | None = None, timeout: float = 30
    ) -> httpx.Response:
        """Wait until the server answers `path` at all (any status); returns that response."""

        def probe() -> httpx.Response | None:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"sisu serve exited {self.proc.returncode}; log tail:\n{self.log_tail()}"
                )
            try:
                return httpx.get(self.base_url + path, headers=headers, timeout=2)
            except httpx.TransportError:
                return None

        return poll("sisu serve to answer", probe, timeout=timeout, interval=0.1)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@contextmanager
def running_serve(
    env: dict[str, str],
    log_path: Path,
    *,
    host: str = "127.0.0.1",
    cli_args: tuple[str, ...] = (),
) -> Iterator[ServeProcess]:
    server = ServeProcess(env, log_path, host=host, cli_args=cli_args)
    try:
        server.start()
        yield server
    finally:
        server.stop()


# --- RunView normalisation (golden file) ---------------------------------------------------

ISO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
TIME_KEYS = {"createdAt", "updatedAt", "startedAt", "finishedAt"}


def normalise_runview(view: dict[str, Any], *, run_id: str, workspaces: Path) -> Any:
    """Replace what differs between two identical runs — the id, timestamps, digests and the
    workspace location — with placeholders. Anything malformed is left as it is, so that it
    shows up as a difference against the golden file."""
    workspace_uri = workspaces.as_uri()
    workspace_path = str(workspaces)

    def walk(value: Any, key: str | None) -> Any:
        if isinstance(value, dict):
            return {k: walk(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, key) for v in value]
        if isinstance(value, str):
            if key in TIME_KEYS and ISO_TIME.match(value):
                return "<time>"
            if key == "sha256" and SHA256.match(value):
                return "<sha256>"
            value = value.replace(workspace_uri, "file://<workspaces>")
            value = value.replace(workspace_path, "<workspaces>")
            return value.replace(run_id, "<runId>")
        return value

    return walk(view, None)


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def intent_worker(
    url: str, tmp_path: Path, name: str, *args: str, env: dict[str, str] | None = None
) -> WorkerProcess:
    """A real worker (not started) on the intent queue only, from a clean environment plus
    `env`, its home and log under `tmp_path`; `args` are extra `sisu worker` flags."""
    executor_id = f"{name}-{uuid.uuid4().hex[:8]}"
    return WorkerProcess(
        url=url,
        executor_id=executor_id,
        app_version="v1",
        queues=(INTENT_QUEUE,),
        log_path=tmp_path / "logs" / f"{executor_id}.log",
        extra_args=args,
        extra_env={"SISU_HOME": str(tmp_path / "home"), **(env or {})},
        clean_env=True,
    )
