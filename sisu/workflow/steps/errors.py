"""Errors a step raises to its workflow. They are checkpointed (pickled) by DBOS, so a replayed
step raises the same error again: keep them plain, with one string argument."""

from __future__ import annotations

from typing import Any


class StepError(Exception):
    """A step failed for good: the run fails."""

    code = "step_failed"
    # What the operator does next: None (nothing to repair), or "REPAIR" (`sisu run retry`).
    next_action: str | None = None

    def as_error(self, step_id: str | None = None) -> dict[str, Any]:
        return {"code": self.code, "message": str(self), "step": step_id}


class TransientStepError(StepError):
    """A step failed in a way worth retrying (a timeout, a dropped connection)."""

    code = "transient"


class RetriesExhausted(StepError):
    """A step kept failing transiently until it ran out of attempts: the run needs repair."""

    code = "retries_exceeded"


class InputTimeout(StepError):
    """Nobody answered the run's question in time."""

    code = "input_timeout"


class BudgetExceeded(StepError):
    """The run spent its model budget (constraints.maxModelRequests / maxTokens): a retry with a
    larger budget, or as it is, may finish it."""

    code = "budget_exceeded"
    next_action = "REPAIR"


class InvalidPlan(StepError):
    """The model returned no plan that validates, even after being told what was wrong."""

    code = "invalid_plan"


class CommandFailed(StepError):
    """The plan's test command exited non-zero in the sandbox; the message holds the exit code
    and the output's tail. `sisu run retry` runs ExecuteST again in a rebuilt workspace."""

    code = "command_failed"
    next_action = "REPAIR"


class CommandTimeout(StepError):
    """The plan's test command outran constraints.timeoutSeconds; its process group was
    killed."""

    code = "command_timeout"
    next_action = "REPAIR"


class DeliveryRejected(StepError):
    """The webhook receiver answered a delivery with a 4xx other than 408/429: retrying the
    same request would get the same answer until the receiver is fixed."""

    code = "delivery_rejected"
    next_action = "REPAIR"
