"""The built-in compiler: deterministic and offline — the same intent always compiles to the
same plan, which makes runs reproducible and the compiler-call audit meaningful."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from sisu.contracts.runs import scripted_plan
from sisu.workflow.steps.errors import InvalidPlan

MAX_TASKS = 100
DEFAULT_INPUT_TIMEOUT_SECONDS = 24 * 3600
# A goal that asks (the word "ask") needs a human answer before the decision.
_ASKS = re.compile(r"\bask(s|ed|ing)?\b", re.IGNORECASE)
ANSWER_SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string"}},
    "required": ["answer"],
}


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def approval_node(question: str, constraints: dict[str, Any]) -> dict[str, Any]:
    """The plan node that makes a run wait for a human answer (every compiler's)."""
    timeout = constraints.get("inputTimeoutSeconds", DEFAULT_INPUT_TIMEOUT_SECONDS)
    if not isinstance(timeout, int | float) or timeout <= 0:
        timeout = DEFAULT_INPUT_TIMEOUT_SECONDS
    return {
        "id": "n1a",
        "kind": "approval",
        "label": "wait for a human answer",
        "question": question,
        "schema": ANSWER_SCHEMA,
        "timeoutSeconds": timeout,
    }


APPROVAL_SCHEMA = {
    "type": "object",
    "properties": {"approved": {"type": "boolean"}, "reason": {"type": "string"}},
    "required": ["approved"],
}


def approval_gate(constraints: dict[str, Any]) -> dict[str, Any]:
    """The node `constraints.requireApproval` adds: after ApplyPatchST the run waits for an
    `approval` event; a rejection cancels it."""
    node = approval_node("Approve this change?", constraints)
    node.update(
        id="gate",
        label="wait for approval of the change",
        schema=APPROVAL_SCHEMA,
        eventType="approval",
    )
    return node


class BuiltinCompiler:
    name = "builtin"

    def compile(self, request: dict[str, Any]) -> dict[str, Any]:
        goal: str = request["goal"]
        inputs: dict[str, Any] = request.get("inputs") or {}
        plan_id = _digest({"goal": goal, "inputs": inputs})[:16]
        task_count = inputs.get("tasks", 1)
        if not isinstance(task_count, int) or not 0 <= task_count <= MAX_TASKS:
            task_count = 1
        nodes: list[dict[str, Any]] = [
            {"id": "n1", "kind": "compute", "label": f"analyse: {goal}"},
            {"id": "n2", "kind": "decision", "label": "choose the tasks to execute"},
            {"id": "n3", "kind": "io", "label": "deliver the tasks"},
        ]
        if _ASKS.search(goal):
            nodes.insert(1, approval_node(goal, request.get("constraints") or {}))
        try:
            files, test_command = scripted_plan(inputs)
        except ValueError as exc:  # an intent created before the contract checked this
            raise InvalidPlan(str(exc)) from exc
        plan_doc = "\n".join(
            [f"# Plan {plan_id}", "", f"Goal: {goal}", ""]
            + [f"- {n['id']} ({n['kind']}): {n['label']}" for n in nodes]
        )
        plan: dict[str, Any] = {
            "compiler": self.name,
            "planId": plan_id,
            "nodes": nodes,
            "patch": {
                "files": files
                if files is not None
                else [
                    {"path": "PLAN.md", "content": plan_doc + "\n"},
                    {
                        "path": "intent.json",
                        "content": json.dumps({"goal": goal, "inputs": inputs}, sort_keys=True)
                        + "\n",
                    },
                ]
            },
            "tests": [{"name": "plan_has_io_node", "expect": "any(node.kind == 'io')"}],
            "tasks": [
                {"taskKey": f"task-{i + 1}", "payload": {"planId": plan_id, "index": i + 1}}
                for i in range(task_count)
            ],
        }
        if test_command is not None:
            plan["testCommand"] = test_command
        return plan
