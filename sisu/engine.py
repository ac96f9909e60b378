"""DBOS wiring shared by workers and by callers that only enqueue or read: the application
name, schema and queue names, the DBOS config, and the client. Importing this module is cheap;
DBOS itself is imported only inside the functions that need it."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from sisu.db.url import sqlalchemy_url

if TYPE_CHECKING:
    from dbos import DBOSClient

APP_NAME = "sisu"
DBOS_SCHEMA = "dbos"
# Intent runs (RunIntentWF) and drill workflows (CrashDemoWF) live on separate queues so that a
# drill's own worker, and only it, picks up the drill's workflow.
INTENT_QUEUE = "sisu-intents"
# Runs with a partition key (per-tenant fairness) go to a partitioned queue: DBOS dequeues its
# partitions in turn. DBOS does not deduplicate on partitioned queues.
PARTITIONED_QUEUE = "sisu-intents-partitioned"
DRILL_QUEUE = "sisu-drills"
# DBOS polls each queue; its 1 s default alone caps enqueue-to-start latency.
QUEUE_POLL_SECONDS = 0.05


def quiet_dbos_logs(level: int = logging.WARNING) -> None:
    logging.getLogger("dbos").setLevel(level)


class _CancellationLogFilter(logging.Filter):
    """A run an operator cancels is a decision, not a fault; DBOS 3.4 still logs it as an ERROR
    with a traceback. A workflow thread that sees its run cancelled (a checkpoint conflict, or a
    step preempted) first says so in one WARNING line (`_core.py`, `adopt_recorded_outcome`),
    then waits for the recorded outcome, gets `DBOSAwaitedWorkflowCancelledError` for its own
    id, and `_execute_workflow_wthread` logs "Exception encountered in background workflow"
    with that traceback. That record is dropped; any other record caused by a cancellation
    becomes one WARNING line without the traceback. Every other record passes untouched."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None:
            return True
        from dbos import DBOS

        from sisu.compat import DBOSAwaitedWorkflowCancelledError, DBOSWorkflowCancelledError

        if not isinstance(exc, DBOSAwaitedWorkflowCancelledError | DBOSWorkflowCancelledError):
            return True
        if (
            isinstance(exc, DBOSAwaitedWorkflowCancelledError)
            and exc.workflow_id == DBOS.workflow_id
        ):
            return False
        record.msg = f"{record.getMessage()} {exc}"
        record.args = None
        record.exc_info = None
        record.exc_text = None
        record.levelno = logging.WARNING
        record.levelname = logging.getLevelName(logging.WARNING)
        return True


def calm_cancellation_logs() -> None:
    """Install `_CancellationLogFilter` on DBOS's logger (once per process; workers only)."""
    logger = logging.getLogger("dbos")
    if not any(isinstance(f, _CancellationLogFilter) for f in logger.filters):
        logger.addFilter(_CancellationLogFilter())


class _OutcomeLogFilter(logging.Filter):
    """A run that ends `retries_exceeded` or `failed` (a `StepError`: retries spent, a budget
    spent, a command that failed) is an expected outcome: the step that records it in the rows
    logs one WARNING line with the run id, step and code (`steps.finish_run`). The workflow
    then re-raises the error, so that DBOS records the workflow as ERROR, and DBOS logs it again
    ("Exception encountered in background workflow") with a traceback some 80 lines long. That
    record is dropped, unless `verbose` asks for the tracebacks. Every other record passes."""

    def __init__(self, *, verbose: bool = False) -> None:
        super().__init__()
        self.verbose = verbose

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None or self.verbose:
            return True
        from sisu.workflow.steps.errors import StepError

        return not isinstance(exc, StepError)


def calm_outcome_logs(*, verbose: bool = False) -> None:
    """Install `_OutcomeLogFilter` on DBOS's logger (replacing an earlier one; workers only)."""
    logger = logging.getLogger("dbos")
    for old in [f for f in logger.filters if isinstance(f, _OutcomeLogFilter)]:
        logger.removeFilter(old)
    logger.addFilter(_OutcomeLogFilter(verbose=verbose))


def dbos_config(
    url: str,
    *,
    app_version: str,
    executor_id: str,
    log_level: str = "WARNING",
    traces_endpoint: str | None = None,
) -> dict[str, Any]:
    """`traces_endpoint`: an OTLP/HTTP traces URL DBOS exports its workflow and step spans to
    (`sisu.tracing`); None leaves DBOS's tracing off, and opentelemetry unimported."""
    config: dict[str, Any] = {
        "name": APP_NAME,
        "system_database_url": sqlalchemy_url(url),
        "dbos_system_schema": DBOS_SCHEMA,
        "application_version": app_version,
        "executor_id": executor_id,
        "log_level": log_level,
        "sys_db_pool_size": 20,
        "db_engine_kwargs": {"pool_pre_ping": False},
    }
    if traces_endpoint:
        config["enable_otlp"] = True
        config["otlp_traces_endpoints"] = [traces_endpoint]
    return config


def client(url: str) -> DBOSClient:
    """A DBOS client: enqueues and reads workflows without importing any workflow code."""
    quiet_dbos_logs()
    from dbos import DBOSClient

    return DBOSClient(
        system_database_url=sqlalchemy_url(url),
        dbos_system_schema=DBOS_SCHEMA,
        application_name=APP_NAME,
        retry_connection_errors=False,
    )
