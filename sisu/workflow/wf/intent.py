"""RunIntentWF: CompileST → ApplyPatchST → DecideST → ExecuteST, each retried on transient
errors with exponential backoff (durable sleeps), the run marked for repair when a step runs out
of attempts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dbos import DBOS

from sisu.workflow.steps import intent as steps
from sisu.workflow.steps.errors import RetriesExhausted, StepError, TransientStepError

NAME = "RunIntentWF"


def _with_retries(
    step_id: str, policy: dict[str, Any], call: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    max_attempts = int(policy.get("maxAttempts", 3))
    delay = float(policy.get("backoffSeconds", 1.0))
    attempt = 1
    while True:
        try:
            return call()
        except TransientStepError as exc:
            if attempt >= max_attempts:
                raise RetriesExhausted(f"{step_id}: {exc} (after {attempt} attempts)") from exc
            DBOS.sleep(delay * 2 ** (attempt - 1))
            attempt += 1


@DBOS.workflow(name=NAME)
def run_intent_wf(run_id: str, policy: dict[str, Any]) -> dict[str, Any]:
    step_id = "CompileST"
    try:
        plan = _with_retries(step_id, policy, lambda: steps.compile_st(run_id))
        step_id = "ApplyPatchST"
        _with_retries(step_id, policy, lambda: steps.apply_patch_st(run_id, plan))
        step_id = "DecideST"
        decision = _with_retries(step_id, policy, lambda: steps.decide_st(run_id, plan))
        step_id = "ExecuteST"
        return _with_retries(step_id, policy, lambda: steps.execute_st(run_id, decision))
    except RetriesExhausted as exc:
        steps.finish_run(run_id, "retries_exceeded", "REPAIR", exc.as_error(step_id))
        raise
    except StepError as exc:
        steps.finish_run(run_id, "failed", None, exc.as_error(step_id))
        raise
