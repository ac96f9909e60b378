"""Errors a step raises to its workflow. They are checkpointed (pickled) by DBOS, so a replayed
step raises the same error again: keep them plain, with one string argument."""

from __future__ import annotations

from typing import Any


class StepError(Exception):
    """A step failed for good: the run fails."""

    code = "step_failed"

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
