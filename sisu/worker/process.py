"""`sisu worker`: one DBOS executor with a stable executor id, its heartbeat and admin endpoint.

A worker killed -9 and started again with the same executor id and app version recovers its own
pending workflows (DBOS recovery is per executor id), which is why the id must be stable across
restarts and unique per worker — never DBOS's shared default "local"."""

from __future__ import annotations

import faulthandler
import logging
import math
import os
import signal
import socket
import sys
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sisu import compat, engine, logs, metrics, names, tracing
from sisu.db import migrations
from sisu.db.connection import connect
from sisu.db.queries import q
from sisu.errors import SisuError, ValidationFailed
from sisu.worker import admin, failover, heartbeat, queues, resume

if TYPE_CHECKING:
    from sisu.config import Settings

log = logging.getLogger("sisu.worker")


@dataclass(frozen=True)
class WorkerOptions:
    url: str
    app_version: str
    executor_id: str
    admin_host: str
    admin_port: int
    concurrency: int | None
    queues: tuple[str, ...]
    home: Path
    heartbeat_seconds: float
    dead_after_seconds: float
    grace_seconds: float = 10.0
    metrics_cache_seconds: float = 5.0
    failover_timeout: float = 10.0
    global_concurrency: int | None = None
    partition_concurrency: int = 4
    step_slots: int = 16
    compiler: str = "builtin"
    # The model compiler's settings (validated by the CLI); None for the built-in compiler.
    llm: Any = None
    # The replay compiler's source (SISU_REPLAY_FROM) and the responses it serves.
    replay_from: str | None = None
    replay_responses: list[Any] | None = None
    cap_model_requests: int = 50
    cap_tokens: int = 500_000
    step_max_attempts: int = names.DEFAULT_STEP_MAX_ATTEMPTS
    step_backoff_seconds: float = names.DEFAULT_STEP_BACKOFF_SECONDS
    # What ExecuteST does: mock, sandbox or http (see checked_executor), and their settings.
    executor: str = "mock"
    sandbox_isolation: str = "bwrap"
    cap_sandbox_minutes: int = 60
    webhook_url: str | None = None
    webhook_token: str | None = None
    # The admin port's socket, already bound (`bind_admin_port`); None: bind admin_port here.
    admin_socket: socket.socket | None = None
    # Where DBOS exports the worker's spans (OTLP/HTTP traces URL); None: no traces.
    traces_endpoint: str | None = None


def default_executor_id(admin_port: int) -> str:
    """Stable across restarts (same host, same admin port) and unique per live worker (two
    workers cannot share an admin port on one host)."""
    return f"{socket.gethostname()}-{admin_port}"


def bind_admin_port(host: str, flag: int | None, settings: Settings) -> tuple[socket.socket, int]:
    """The worker's admin socket, bound, and the port the worker is known by (for
    `executor_id_for`).

    `--admin-port N` or ADMIN_PORT (SISU_ADMIN_PORT) names the one port to use: busy, it is
    port_in_use, as before. Neither given, the worker takes the first free port from the
    default (3002) up: a second worker on the machine needs no flag, and each keeps its port,
    so its executor id (`default_executor_id`), across restarts as long as the workers
    started before it keep theirs. The port returned is the bound one, or 0 when 0 (any free
    port, no stable identity) was asked for."""
    requested = flag if flag is not None else settings.admin_port
    if flag is None and "admin_port" not in settings.model_fields_set:
        sock = admin.bind_first_free(host, requested)
    else:
        sock = admin.bind(host, requested)
    bound = int(sock.getsockname()[1])
    if requested not in (0, bound):
        log.info(
            "admin port %d is taken (another worker?): this worker uses %d, and is known by it",
            requested,
            bound,
        )
    return sock, 0 if requested == 0 else bound


def executor_id_for(admin_port: int, chosen: str | None = None) -> str:
    """The chosen executor id, else the default for the admin port. Port 0 (any free one) gives
    no stable default: then a random id, with a warning that a restart will not recover it."""
    if chosen is not None:
        return chosen
    if admin_port != 0:
        return default_executor_id(admin_port)
    random_id = f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
    log.warning(
        "--admin-port 0 without --executor-id: using %s, which will not be the same "
        "after a restart",
        random_id,
    )
    return random_id


# A peer that waited less than this many heartbeat intervals would take a live worker whose
# beat is merely late for dead, and recover runs still in flight.
MIN_FAILOVER_HEARTBEATS = 1.5


def check_failover_timeout(failover_timeout: float, heartbeat_seconds: float) -> None:
    """A validation_error unless the failover timeout outlasts a late heartbeat."""
    shortest = MIN_FAILOVER_HEARTBEATS * heartbeat_seconds
    if failover_timeout < shortest:
        raise ValidationFailed(
            f"--failover-timeout {failover_timeout:g} is shorter than "
            f"{MIN_FAILOVER_HEARTBEATS:g} heartbeats ({shortest:g}s; SISU_HEARTBEAT_SECONDS): "
            "live workers would be taken for dead",
            details=[{"field": "failover_timeout", "min": shortest}],
        )


@dataclass(frozen=True)
class CompilerChoice:
    """The compiler a worker plans with, and what it needs: a model's settings, or the
    recorded calls it replays."""

    name: str
    llm: Any = None
    replay: Any = None


def checked_compiler(
    chosen: str, settings: Settings, database_url: Callable[[], str]
) -> CompilerChoice:
    """The compiler, or a validation_error (exit 2) naming what to set, before anything starts.
    (`database_url`: where a replay reads the calls it replays; called only for a replay, as
    it may start the embedded server.)"""
    if chosen == "builtin":
        return CompilerChoice(chosen)
    if chosen == "llm":
        from sisu.workflow.steps.llm_compiler import config_from

        key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
        return CompilerChoice(
            chosen, llm=config_from(settings.llm_model, settings.llm_base_url, key)
        )
    if chosen == "replay":
        from sisu.workflow.steps.replay_compiler import load_calls

        if not settings.replay_from:
            raise ValidationFailed(
                "--compiler replay needs a source: set SISU_REPLAY_FROM to a run id, or to a "
                "file from `sisu run calls ID --json`",
                details=[{"field": "SISU_REPLAY_FROM"}],
            )
        return CompilerChoice(chosen, replay=load_calls(settings.replay_from, database_url()))
    raise ValidationFailed(
        f"unknown compiler {chosen!r}: use --compiler builtin, llm or replay (or SISU_COMPILER)",
        details=[{"field": "compiler", "allowed": ["builtin", "llm", "replay"]}],
    )


def checked_executor(
    chosen: str, isolation: str, webhook_url: str | None, webhook_token: str | None
) -> str:
    """The executor, or a validation_error (exit 2) naming what to set, before anything starts."""
    if chosen == "sandbox":
        from sisu import sandbox

        if isolation not in ("bwrap", "none"):
            raise ValidationFailed(
                f"unknown sandbox isolation {isolation!r}: use bwrap or none",
                details=[{"field": "sandbox_isolation", "allowed": ["bwrap", "none"]}],
            )
        why = sandbox.probe("none" if isolation == "none" else "bwrap")
        if why is not None:
            raise ValidationFailed(
                f"--executor sandbox cannot isolate commands here: {why}. Fix that, or pass "
                "--sandbox-isolation none to run them unisolated",
                details=[{"field": "executor", "reason": why}],
            )
    elif chosen == "http":
        if not webhook_url:
            raise ValidationFailed(
                "--executor http needs SISU_WEBHOOK_URL (where each task is POSTed)",
                details=[{"field": "SISU_WEBHOOK_URL"}],
            )
        from sisu.workflow.steps.webhook import HttpExecutor

        HttpExecutor.check(webhook_url, webhook_token)
    elif chosen != "mock":
        raise ValidationFailed(
            f"unknown executor {chosen!r}: use --executor mock, sandbox or http (or SISU_EXECUTOR)",
            details=[{"field": "executor", "allowed": ["mock", "sandbox", "http"]}],
        )
    return chosen


def _compiler(opts: WorkerOptions) -> Any:
    """The worker's compiler; a model compiler is built after DBOS() and before its launch (its
    model requests are DBOS steps, and recovery at launch may call it at once)."""
    attempts, backoff = opts.step_max_attempts, opts.step_backoff_seconds
    if opts.compiler == "llm":
        from sisu.workflow.steps.llm_compiler import llm_compiler

        return llm_compiler(opts.llm, opts.url, max_attempts=attempts, backoff=backoff)
    if opts.compiler == "replay":
        from sisu.workflow.steps.replay_compiler import replay_compiler

        assert opts.replay_from is not None and opts.replay_responses is not None
        return replay_compiler(
            opts.replay_from,
            opts.replay_responses,
            opts.url,
            max_attempts=attempts,
            backoff=backoff,
        )
    return None  # the built-in compiler


def _executor(opts: WorkerOptions) -> Any:
    """The worker's outside executor, or None for the mock outside system."""
    if opts.executor == "sandbox":
        from sisu.sandbox import Isolation, SandboxExecutor

        isolation: Isolation = "none" if opts.sandbox_isolation == "none" else "bwrap"
        return SandboxExecutor(opts.cap_sandbox_minutes, isolation=isolation)
    if opts.executor == "http":
        from sisu.workflow.steps.webhook import HttpExecutor

        assert opts.webhook_url is not None
        return HttpExecutor(opts.webhook_url, opts.webhook_token, opts.url)
    return None


def _grace(opts: WorkerOptions) -> int:
    """The grace period to wait, or 0 when nothing of this worker is in flight."""
    try:
        with connect(opts.url) as conn:
            row = conn.execute(
                q("executor_pending_count"), {"executor_id": opts.executor_id}
            ).fetchone()
    except SisuError:
        return 0
    return math.ceil(opts.grace_seconds) if row and row["n"] else 0


def run(opts: WorkerOptions) -> int:
    """Run until SIGTERM or SIGINT; returns the exit code."""
    if opts.executor_id == "local":
        raise ValidationFailed(
            "executor id 'local' is DBOS's shared default; every worker needs its own id"
        )
    # The CLI set up the process's logs (format, verbosity, secrets) before it did anything.
    if logs.active_format() is None:
        logs.setup()
    logs.bind(executor_id=opts.executor_id)
    engine.quiet_dbos_logs()
    engine.calm_cancellation_logs()
    engine.calm_outcome_logs(verbose=logs.verbose())
    migrations.ensure(opts.url)

    me = heartbeat.WorkerIdentity(
        executor_id=opts.executor_id,
        app_version=opts.app_version,
        queues=list(opts.queues),
        concurrency=opts.concurrency,
    )
    stop = threading.Event()
    launched = threading.Event()

    def health() -> dict[str, Any]:
        return {
            "ok": launched.is_set() and not stop.is_set(),
            "executorId": opts.executor_id,
            "appVersion": opts.app_version,
            "queues": list(opts.queues),
            "pid": me.pid,
        }

    # The page is built before DBOS starts: a scrape answers from the first moment, and never
    # waits on DBOS (its database gauges are read on a short connection of their own).
    gauges = metrics.DatabaseGauges(
        opts.url,
        cache_seconds=opts.metrics_cache_seconds,
        dead_after_seconds=opts.dead_after_seconds,
    )
    page = metrics.worker_page(gauges, app_version=opts.app_version)
    admin_server = admin.serve(
        opts.admin_host,
        opts.admin_port,
        health,
        lambda: metrics.render(page),
        sock=opts.admin_socket,
    )
    me.admin_port = admin_server.server_port
    heartbeat.claim(opts.url, me, opts.dead_after_seconds)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    # `kill -USR2 PID` writes every thread's stack to the worker's log: what a stuck worker is
    # doing, without stopping it.
    faulthandler.register(signal.SIGUSR2, all_threads=True)

    from dbos import DBOS

    import sisu.workflow.registry  # noqa: F401  (registers the workflows with DBOS)
    from sisu.workflow.steps import datasource, runtime

    # Before the first dequeue: a launched worker polls with the settings stored in the database.
    queues.store(
        opts.url,
        opts.executor_id,
        {
            name: queues.settings_for(
                name,
                concurrency=opts.concurrency,
                global_concurrency=opts.global_concurrency,
                partition_concurrency=opts.partition_concurrency,
            )
            for name in opts.queues
        },
    )
    if opts.traces_endpoint:
        tracing.enable()
    DBOS(
        config=engine.dbos_config(  # type: ignore[arg-type]
            opts.url,
            app_version=opts.app_version,
            executor_id=opts.executor_id,
            traces_endpoint=opts.traces_endpoint,
        )
    )
    tracing.label_spans()
    executor = _executor(opts)
    runtime.configure(
        opts.home,
        opts.url,
        step_slots=opts.step_slots,
        compiler=_compiler(opts),
        executor=executor,
        cap_model_requests=opts.cap_model_requests,
        cap_tokens=opts.cap_tokens,
    )
    datasource.bind(opts.url, step_slots=opts.step_slots)
    DBOS.listen_queues(list(opts.queues))
    DBOS.launch()
    beat = heartbeat.Heartbeat(
        opts.url, me, opts.heartbeat_seconds, active=lambda: sorted(compat.active_workflow_ids())
    )
    beat.start()
    watcher = failover.Failover(
        opts.url,
        opts.executor_id,
        opts.app_version,
        timeout=opts.failover_timeout,
        interval=opts.heartbeat_seconds,
    )
    watcher.start()
    resumer = resume.Resumer(
        opts.url, opts.executor_id, opts.app_version, interval=opts.heartbeat_seconds
    )
    resumer.start()
    launched.set()
    log.info(
        "worker %s ready: pid %d, app version %s, queues %s, compiler %s, executor %s, "
        "admin http://%s:%d/healthz and /metrics",
        opts.executor_id,
        me.pid,
        opts.app_version,
        ",".join(opts.queues),
        opts.compiler,
        opts.executor,
        opts.admin_host,
        me.admin_port,
    )

    # Never block for good: the kernel may deliver SIGTERM to any of the process's threads, and
    # Python runs the handler (which sets `stop`) only when the main thread wakes up. Blocked in
    # an untimed wait, a worker under load sometimes never heard its SIGTERM.
    while not stop.wait(timeout=0.5):
        pass
    log.info("worker %s stopping", opts.executor_id)
    admin_server.shutdown()
    # Both background sweeps are told at once, then waited for: a stop is not two timeouts long.
    for sweeper in (watcher, resumer):
        sweeper.request_stop()
    watcher.stop()
    resumer.stop()
    # Graceful: DBOS stops dequeuing first, then waits up to the grace period for the
    # workflows in flight; what is left is recovered like a crash. The heartbeat goes on
    # meanwhile, so that nobody takes this worker for dead while it finishes.
    DBOS.destroy(workflow_completion_timeout_sec=_grace(opts))
    # After the workflows in flight: their spans end before the exporter's last flush.
    tracing.shutdown()
    if hasattr(executor, "close"):
        executor.close()
    beat.stop()
    logging.shutdown()
    sys.stderr.flush()
    # Workflow threads still inside a durable sleep would keep the interpreter alive; whatever is
    # in flight is recovered from its last checkpoint when a worker with this id starts again.
    os._exit(0)
