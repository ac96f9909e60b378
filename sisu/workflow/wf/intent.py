"""RunIntentWF: CompileST → ApplyPatchST → DecideST → ExecuteST. A plan with an approval node
waits durably for a human answer before DecideST. Each step is retried on transient errors with
exponential backoff (durable sleeps); a step out of attempts leaves the run for repair."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dbos import DBOS

from sisu import names
from sisu.workflow.steps import intent as steps
from sisu.workflow.steps.errors import (
    InputTimeout,
    RetriesExhausted,
    StepError,
    TransientStepError,
)

NAME = names.RUN_INTENT_WF
INPUT_TOPIC = names.INPUT_TOPIC  # sisu.service.human sends answers on this topic


def _with_retries(
    step_id: str, policy: dict[str, Any], call: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    max_attempts = int(policy.get("maxAttempts", names.DEFAULT_STEP_MAX_ATTEMPTS))
    delay = float(policy.get("backoffSeconds", names.DEFAULT_STEP_BACKOFF_SECONDS))
    attempt = 1
    while True:
        try:
            return call()
        except TransientStepError as exc:
            if attempt >= max_attempts:
                raise RetriesExhausted(f"{step_id}: {exc} (after {attempt} attempts)") from exc
            DBOS.sleep(delay * 2 ** (attempt - 1))
            attempt += 1


def _await_answer(
    run_id: str, node: dict[str, Any], plan: dict[str, Any], applied: dict[str, Any]
) -> dict[str, Any]:
    steps.await_input_st(run_id, node, plan, applied)
    event = DBOS.recv(INPUT_TOPIC, timeout_seconds=float(node["timeoutSeconds"]))
    if event is None:
        raise InputTimeout(f"no answer within {node['timeoutSeconds']}s")
    return dict(event["payload"])


@DBOS.workflow(name=NAME)
def run_intent_wf(
    run_id: str, policy: dict[str, Any], intent: dict[str, Any] | None = None
) -> dict[str, Any]:
    # `intent`: the intent's row as the run was started (sisu.service.intents.start_run); None
    # for a run enqueued before it travelled with the workflow, whose steps then read it.
    inputs = intent["inputs"] if intent is not None else None
    constraints = intent["constraints"] if intent is not None else None
    step_id = names.COMPILE_ST
    try:
        # A model compiler plans before CompileST, outside any transaction; its requests are
        # steps with their own retries.
        draft = steps.draft_plan(run_id, intent) if steps.plans_outside() else None
        plan = _with_retries(step_id, policy, lambda: steps.compile_st(run_id, draft, intent))
        step_id = names.APPLY_PATCH_ST
        applied = _with_retries(step_id, policy, lambda: steps.apply_patch_st(run_id, plan))
        step_id = names.DECIDE_ST
        node = steps.approval_node(plan)
        answer = _await_answer(run_id, node, plan, applied) if node is not None else None
        if node is not None and node.get("eventType") == "approval":
            assert answer is not None
            if not answer.get("approved"):
                reason = str(answer.get("reason") or "rejected without a reason")
                steps.finish_run(run_id, "canceled", None, steps.rejection(reason))
                return {"rejected": True, "reason": reason}
        decision = _with_retries(step_id, policy, lambda: steps.decide_st(run_id, plan, answer))
        step_id = names.EXECUTE_ST
        # An outside executor (a sandboxed command, a webhook) works before ExecuteST's
        # transaction, in a step of its own; ExecuteST then records what it did.
        outside = steps.executes_outside()
        return _with_retries(
            step_id,
            policy,
            lambda: steps.execute_st(
                run_id,
                decision,
                steps.perform(run_id, plan, decision, constraints) if outside else None,
                inputs,
            ),
        )
    except RetriesExhausted as exc:
        steps.finish_run(run_id, "retries_exceeded", "REPAIR", exc.as_error(step_id))
        raise
    except StepError as exc:
        steps.finish_run(run_id, "failed", exc.next_action, exc.as_error(step_id))
        raise
    except Exception as exc:
        if not steps.is_transient_failure(exc):
            raise
        # The database failed under DBOS's own bookkeeping (a checkpoint, a durable sleep),
        # outside any step's retries. While it is down, this raises too and the workflow stays
        # PENDING for the worker to resume; if it is back, the run waits for repair instead of
        # ending as an error nobody is asked to act on.
        error = RetriesExhausted(f"{step_id}: the database failed: {type(exc).__name__}: {exc}")
        steps.finish_run(run_id, "retries_exceeded", "REPAIR", error.as_error(step_id))
        raise
