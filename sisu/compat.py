"""The private DBOS APIs sisu relies on, in one place. DBOS 3.x has no public way to ask which
workflows this process runs, nor to recover chosen workflows of one executor, and its exception
classes live in a private module; everything here is covered by tests/unit/test_compat.py, which
fails loudly when an upgrade moves what it reaches into. ruff's banned-api rule (TID251) keeps
these private paths out of every other module.

Importing this module imports dbos (~0.8 s): light modules import it inside the function that
needs it, never at the top."""

from __future__ import annotations

from typing import Any

# The workflow attribute DBOS reads a run's trace context from, on first execution and on
# recovery (PropagateOtelContext writes it): sisu.tracing enqueues each run with its own.
from dbos._context import OTEL_CARRIER_ATTRIBUTE

# DBOS re-exports this module as `dbos.error`, but its classes are defined (and documented) in
# `dbos._error`; both names are checked to be the same objects.
from dbos._error import (
    DBOSAwaitedWorkflowCancelledError,
    DBOSMaxStepRetriesExceeded,
    DBOSQueueDeduplicatedError,
    DBOSWorkflowCancelledError,
)

__all__ = [
    "OTEL_CARRIER_ATTRIBUTE",
    "DBOSAwaitedWorkflowCancelledError",
    "DBOSMaxStepRetriesExceeded",
    "DBOSQueueDeduplicatedError",
    "DBOSWorkflowCancelledError",
    "active_workflow_ids",
    "recover_executor",
    "recover_workflows",
]


def _dbos() -> Any:
    from dbos._dbos import _get_dbos_instance

    return _get_dbos_instance()


def active_workflow_ids() -> set[str]:
    """Workflows a thread of this process is executing now (DBOS adds a workflow when its
    thread starts and removes it when the thread ends, however it ends)."""
    return set(_dbos()._active_workflows_set.activeList())


def recover_executor(executor_id: str) -> list[str]:
    """Re-enqueue every PENDING workflow of a dead executor (DBOS's recovery entry point);
    the queue's atomic dequeue then admits exactly one runner. The ids re-enqueued."""
    from dbos import DBOS

    return [h.get_workflow_id() for h in DBOS._recover_pending_workflows([executor_id])]


def recover_workflows(executor_id: str, workflow_ids: list[str]) -> list[str]:
    """Re-enqueue chosen PENDING workflows of `executor_id`, through the same recovery step
    DBOS uses at start-up. A workflow that is no longer PENDING on that executor (it finished,
    or someone else took it) is left alone. The ids re-enqueued."""
    from dbos._utils import INTERNAL_QUEUE_NAME

    sys_db = _dbos()._sys_db
    return [
        wf_id
        for wf_id in workflow_ids
        if sys_db.reenqueue_for_recovery(wf_id, [executor_id], INTERNAL_QUEUE_NAME)
    ]
