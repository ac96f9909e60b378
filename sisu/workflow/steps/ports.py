"""The ports steps talk through. Built-ins: an offline deterministic compiler and the mock
outside system; a live LLM compiler or a sandboxed executor plugs in here without touching wf/."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable


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


@dataclass(frozen=True)
class Work:
    """What an outside executor acts on in ExecuteST. Built afresh for every attempt: the
    workspace has just been rebuilt from the repository's commit and the plan's files."""

    run_id: str
    workspace: Path  # $SISU_HOME/workspaces/<runId>
    tasks: tuple[dict[str, Any], ...]  # the decision's tasks: {taskKey, payload}
    test_command: str | None  # the plan's testCommand
    constraints: dict[str, Any]  # the intent's constraints (timeoutSeconds, env, ...)
    logs: Path  # $SISU_HOME/logs/<runId>: where a command's output files go


@runtime_checkable
class OutsideExecutor(Protocol):
    """An executor whose work is slow or remote (a command in a sandbox, a webhook). ExecuteST
    calls `perform` with no database transaction and no pooled connection held, records what it
    returns, then moves the run."""

    name: str
    # Whether `perform` needs the run's workspace rebuilt first (the sandbox does; a webhook
    # does not).
    uses_workspace: bool

    def perform(self, work: Work) -> dict[str, Any]:
        """Do the run's outside work and return its JSON-able outcome; an optional
        `artifacts` list of {kind, uri, sha256} is recorded as ExecuteST's artifacts. Raise
        TransientStepError for what is worth another attempt, CommandFailed, CommandTimeout or
        DeliveryRejected (sisu.workflow.steps.errors) for what fails the run."""
        ...
