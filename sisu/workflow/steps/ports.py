"""The ports steps talk through. Built-ins: an offline deterministic compiler and the mock
outside system; a live LLM compiler or a sandboxed executor plugs in here without touching wf/."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


class Compiler(Protocol):
    name: str

    def compile(self, request: dict[str, Any]) -> dict[str, Any]:
        """Turn an intent into a plan: {nodes, patch: {files}, tests, tasks}."""
        ...


@dataclass(frozen=True)
class Delivery:
    receipt_key: str  # the idempotency key: runId:stepId:taskKey
    run_id: str
    step_id: str
    task_key: str
    payload_hash: str


@dataclass(frozen=True)
class Receipt:
    receipt_key: str
    seen_count: int


class Executor(Protocol):
    def lookup(self, receipt_key: str) -> Receipt | None:
        """The receipt of an earlier delivery under this key, if the outside system has one."""
        ...

    def deliver(self, delivery: Delivery) -> Receipt:
        """Deliver one task to the outside system."""
        ...
