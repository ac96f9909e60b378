"""Real `sisu worker` children for the tests, and how a test knows one is ready.

Every builder returns a `WorkerProcess` that is not started yet, its log under `tmp_path/logs`.
`running_worker` is the context manager; the others are for tests that start, kill and restart
workers themselves."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from sisu.drills.processes import WorkerProcess
from tests.support.cli import FAST_BACKOFF
from tests.support.db import rows, scalar
from tests.support.metrics import scrape
from tests.support.polling import poll

INTENT_QUEUE = "sisu-intents"
PARTITIONED_QUEUE = "sisu-intents-partitioned"


def worker_home(tmp_path: Path) -> Path:
    """The SISU_HOME of the workers `new_worker` builds (their workspaces live in it)."""
    return tmp_path / "home"


def new_executor_id(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def new_worker(
    url: str,
    tmp_path: Path,
    *,
    name: str,
    queues: tuple[str, ...] = (INTENT_QUEUE,),
    concurrency: int | None = None,
    executor_id: str | None = None,
    fast_retries: bool = False,
    env: dict[str, str] | None = None,
) -> WorkerProcess:
    """A worker on `queues`, sharing `worker_home(tmp_path)` with this process's environment
    plus `env`; `fast_retries` makes a step's first retry wait `FAST_BACKOFF` seconds."""
    executor_id = executor_id or new_executor_id(name)
    env = {"SISU_HOME": str(worker_home(tmp_path)), **(env or {})}
    if fast_retries:
        env["SISU_STEP_BACKOFF_SECONDS"] = FAST_BACKOFF
    return WorkerProcess(
        url=url,
        executor_id=executor_id,
        app_version="v1",
        queues=queues,
        concurrency=concurrency,
        log_path=tmp_path / "logs" / f"{executor_id}-{uuid.uuid4().hex[:4]}.log",
        extra_env=env,
    )


@contextmanager
def running_worker(
    url: str,
    tmp_path: Path,
    *,
    name: str = "rl",
    queues: tuple[str, ...] = (INTENT_QUEUE,),
    concurrency: int | None = None,
    fast_retries: bool = False,
    env: dict[str, str] | None = None,
    kill: bool = False,
) -> Iterator[WorkerProcess]:
    """A started `new_worker`, stopped at exit: gracefully (SIGTERM, then SIGKILL), or with
    `kill` at once by SIGKILL. Kill where runs are left waiting for a human (or sleeping in a
    step): they would hold a graceful stop for its whole grace period, and the database is
    dropped after the test anyway."""
    worker = new_worker(
        url,
        tmp_path,
        name=name,
        queues=queues,
        concurrency=concurrency,
        fast_retries=fast_retries,
        env=env,
    )
    try:
        worker.start()
        yield worker
    finally:
        if kill:
            worker.kill()
        else:
            worker.stop()


def intent_worker(
    url: str,
    tmp_path: Path,
    name: str,
    *args: str,
    env: dict[str, str] | None = None,
    executor_id: str | None = None,
) -> WorkerProcess:
    """A worker on the intent queue only, from a clean environment plus `env`, its home under
    `tmp_path`; `args` are extra `sisu worker` flags. `executor_id` (else a new one from `name`)
    lets a test restart the same worker."""
    executor_id = executor_id or new_executor_id(name)
    return WorkerProcess(
        url=url,
        executor_id=executor_id,
        app_version="v1",
        queues=(INTENT_QUEUE,),
        log_path=tmp_path / "logs" / f"{executor_id}.log",
        extra_args=args,
        extra_env={"SISU_HOME": str(worker_home(tmp_path)), **(env or {})},
        clean_env=True,
    )


def fleet_worker(
    url: str,
    tmp_path: Path,
    executor_id: str,
    *,
    app_version: str = "v1",
    concurrency: int | None = None,
    args: tuple[str, ...] = (),
    home: str | None = None,
) -> WorkerProcess:
    """A worker with a clean environment and a home of its own, as if on a machine of its own;
    `home` shares one (a restart of the same worker)."""
    return WorkerProcess(
        url=url,
        executor_id=executor_id,
        app_version=app_version,
        log_path=tmp_path / "logs" / f"{executor_id}-{uuid.uuid4().hex[:4]}.log",
        admin_port=0,
        concurrency=concurrency,
        extra_env={"SISU_HOME": home or str(tmp_path / f"home-{executor_id}")},
        extra_args=args,
        clean_env=True,
    )


def admin_port(url: str, worker: WorkerProcess) -> int | None:
    """The admin port this very process (by pid) recorded in its heartbeat row, None before
    it has one; AssertionError, with its log, when the worker died."""
    if not worker.alive():
        raise AssertionError(f"worker {worker.executor_id} died:\n{worker.log_tail()}")
    port = scalar(
        url,
        "SELECT admin_port FROM app.workers WHERE executor_id = %s AND pid = %s",
        (worker.executor_id, worker.pid),
    )
    return None if port is None else int(port)


def wait_worker_ready(url: str, worker: WorkerProcess, *, timeout: float = 40) -> None:
    """Until this very process has launched DBOS: its admin /healthz says ok. Fails at once
    when the worker dies."""

    def probe() -> bool | None:
        port = admin_port(url, worker)
        if port is None:
            return None
        try:
            body = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).json()
        except (httpx.TransportError, ValueError):
            return None
        return True if body.get("ok") is True else None

    poll(f"worker {worker.executor_id} to be ready", probe, timeout=timeout, interval=0.1)


def wait_heartbeat_after_ready(url: str, worker: WorkerProcess, *, timeout: float = 10) -> None:
    """Until the worker's heartbeat thread has refreshed its row once since it became ready.

    Used where a test means to look past the start-up window (test_scale_out.py tests that
    window on its own)."""
    ready_at = scalar(url, "SELECT now()")

    def probe() -> bool | None:
        if not worker.alive():
            raise AssertionError(f"worker {worker.executor_id} died:\n{worker.log_tail()}")
        beat = scalar(
            url,
            "SELECT heartbeat_at > %s FROM app.workers WHERE executor_id = %s AND pid = %s",
            (ready_at, worker.executor_id, worker.pid),
        )
        return True if beat else None

    poll(f"worker {worker.executor_id} to heartbeat", probe, timeout=timeout, interval=0.05)


def failover_sweeps(url: str, worker: WorkerProcess) -> float:
    """The failover sweeps a ready worker finished without error, from its /metrics page."""
    port = admin_port(url, worker)
    assert port is not None, f"worker {worker.executor_id} has no admin port yet"
    page = scrape(f"http://127.0.0.1:{port}/metrics")
    return page.value("sisu_failover_sweeps_total", outcome="ok")


def wait_failover_sweeps(
    url: str, worker: WorkerProcess, more: int, *, timeout: float = 30
) -> None:
    """Until a ready worker has finished `more` failover sweeps since this call: one per
    heartbeat interval, each after several of DBOS's queue polls."""
    want = failover_sweeps(url, worker) + more
    poll(
        f"worker {worker.executor_id} to sweep {more} more times",
        lambda: True if failover_sweeps(url, worker) >= want else None,
        timeout=timeout,
        interval=0.2,
    )


def worker_row(url: str, executor_id: str) -> dict[str, Any] | None:
    found = rows(url, "SELECT * FROM app.workers WHERE executor_id = %s", (executor_id,))
    return found[0] if found else None
