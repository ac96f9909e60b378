"""`sisu worker`: run a worker process in the foreground."""

from __future__ import annotations

import typer

from sisu.cli import _logs


def worker(
    admin_port: int = typer.Option(
        None,
        "--admin-port",
        help="Port of the worker's GET /healthz and GET /metrics (env ADMIN_PORT; 0 = any "
        "free). Unset, the first free port from 3002 up: a second worker needs no flag.",
        show_default=False,
    ),
    admin_host: str = typer.Option(
        "127.0.0.1", "--admin-host", help="Address the admin port binds."
    ),
    concurrency: int = typer.Option(
        None,
        "--concurrency",
        min=1,
        help="Most intent runs this worker takes from the queue at once (default: no limit). "
        "A run waiting for a human holds its place.",
    ),
    step_slots: int = typer.Option(
        None,
        "--step-slots",
        min=1,
        max=256,
        help="Most steps this worker runs at once (env SISU_STEP_SLOTS, default 16). Each holds "
        "a database connection; other runs wait for a slot, a run waiting for a human holds none.",
        show_default=False,
    ),
    executor_id: str = typer.Option(
        None,
        "--executor-id",
        help="DBOS executor id: keep it stable across restarts of this worker and unique per "
        "worker (default: HOST-ADMINPORT, from the admin port it binds).",
    ),
    app_version: str = typer.Option(
        None,
        "--app-version",
        help="Application version served (env SISU_APP_VERSION, else DBOS__APPVERSION, else v1).",
    ),
    grace: float = typer.Option(
        10.0,
        "--grace",
        min=0,
        help="On SIGTERM: seconds to let in-flight workflows finish before exiting.",
    ),
    failover_timeout: float = typer.Option(
        10.0,
        "--failover-timeout",
        min=1,
        help="Seconds without a heartbeat after which a worker counts as dead and a live worker "
        "of the same app version recovers its pending runs.",
    ),
    compiler: str = typer.Option(
        None,
        "--compiler",
        help="What plans intents (env SISU_COMPILER, default builtin): builtin (offline, "
        "deterministic), llm (a model: SISU_LLM_MODEL=provider:name, SISU_LLM_BASE_URL for "
        "any OpenAI-compatible server, SISU_LLM_API_KEY) or replay (a run's recorded model "
        "responses: SISU_REPLAY_FROM=RUN_ID or a file from `sisu run calls ID --json`).",
        show_default=False,
    ),
    executor: str = typer.Option(
        None,
        "--executor",
        help="What ExecuteST does (env SISU_EXECUTOR, default mock): mock (the mock outside "
        "system, for drills), sandbox (the plan's testCommand in bubblewrap: no network, only "
        "the workspace writable) or http (each task POSTed to SISU_WEBHOOK_URL with an "
        "Idempotency-Key; SISU_WEBHOOK_TOKEN as a bearer token).",
        show_default=False,
    ),
    sandbox_isolation: str = typer.Option(
        None,
        "--sandbox-isolation",
        help="With --executor sandbox (env SISU_SANDBOX_ISOLATION, default bwrap): bwrap, or "
        "none to run commands UNISOLATED on a machine where bubblewrap cannot work.",
        show_default=False,
    ),
    otlp_endpoint: str = typer.Option(
        None,
        "--otlp-endpoint",
        help="Export traces (one per run) to this OTLP/HTTP base URL, at URL/v1/traces (env "
        "OTEL_EXPORTER_OTLP_ENDPOINT, or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT as the full traces "
        "URL; default: no traces).",
        show_default=False,
    ),
    log_format: str = _logs.log_format_option(),
    queue: list[str] = typer.Option(
        None, "--queue", hidden=True, help="Queues to listen to (drills use their own)."
    ),
) -> None:
    """Run a worker: executes queued workflows, heartbeats, recovers its own work after a crash.

    Stops cleanly on SIGTERM or Ctrl-C; anything in flight resumes from its last checkpoint when
    a worker with the same executor id starts again."""
    from sisu import engine, tracing
    from sisu.cli._settings import database_url, settings
    from sisu.worker import process

    s = settings()
    # First: whatever happens next (the embedded server starting, a refusal) is a log line in
    # the chosen format.
    _logs.setup_logs(s, log_format)
    process.check_failover_timeout(failover_timeout, s.heartbeat_seconds)
    chosen = process.checked_compiler(compiler or s.compiler, s, lambda: database_url(s))
    executor = process.checked_executor(
        executor or s.executor,
        sandbox_isolation or s.sandbox_isolation,
        s.webhook_url,
        s.webhook_token.get_secret_value() if s.webhook_token else None,
    )
    url = database_url(s)
    # Bound now and handed to the worker: the port chosen is the port served.
    admin_socket, port = process.bind_admin_port(admin_host, admin_port, s)
    opts = process.WorkerOptions(
        url=url,
        app_version=app_version or s.app_version,
        executor_id=process.executor_id_for(port, executor_id),
        admin_host=admin_host,
        admin_port=port,
        concurrency=concurrency,
        step_slots=step_slots or s.step_slots,
        queues=tuple(queue) if queue else (engine.INTENT_QUEUE, engine.PARTITIONED_QUEUE),
        home=s.home,
        grace_seconds=grace,
        failover_timeout=failover_timeout,
        global_concurrency=s.global_concurrency,
        partition_concurrency=s.partition_concurrency,
        heartbeat_seconds=s.heartbeat_seconds,
        dead_after_seconds=s.worker_dead_after_seconds,
        metrics_cache_seconds=s.metrics_cache_seconds,
        compiler=chosen.name,
        llm=chosen.llm,
        replay_from=s.replay_from,
        replay_responses=chosen.replay,
        cap_model_requests=s.cap_model_requests,
        cap_tokens=s.cap_tokens,
        step_max_attempts=s.step_max_attempts,
        step_backoff_seconds=s.step_backoff_seconds,
        executor=executor,
        sandbox_isolation=sandbox_isolation or s.sandbox_isolation,
        cap_sandbox_minutes=s.cap_sandbox_minutes,
        webhook_url=s.webhook_url,
        webhook_token=s.webhook_token.get_secret_value() if s.webhook_token else None,
        admin_socket=admin_socket,
        traces_endpoint=(
            tracing.traces_endpoint({tracing.ENDPOINT_ENV: otlp_endpoint})
            if otlp_endpoint
            else tracing.traces_endpoint()
        ),
    )
    raise typer.Exit(process.run(opts))
