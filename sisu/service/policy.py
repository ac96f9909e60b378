"""Queue policy: lane priorities and the fail-closed caps on a run's declared workload, checked
before anything is written."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from sisu import engine
from sisu.contracts.runs import LANE_PRIORITY, RunRequest
from sisu.errors import QueuePolicyViolation, ValidationFailed

if TYPE_CHECKING:
    from sisu.config import Settings


@dataclass(frozen=True)
class QueuePolicy:
    cap_concurrency: int = 16
    cap_steps: int = 64
    cap_sandbox_minutes: int = 60
    cap_model_requests: int = 50
    cap_tokens: int = 500_000
    global_concurrency: int | None = None
    partition_concurrency: int = 4

    @classmethod
    def from_settings(cls, s: Settings) -> QueuePolicy:
        return cls(
            cap_concurrency=s.cap_concurrency,
            cap_steps=s.cap_steps,
            cap_sandbox_minutes=s.cap_sandbox_minutes,
            cap_model_requests=s.cap_model_requests,
            cap_tokens=s.cap_tokens,
            global_concurrency=s.global_concurrency,
            partition_concurrency=s.partition_concurrency,
        )

    def describe(self) -> dict[str, Any]:
        return {
            "caps": {
                "concurrency": self.cap_concurrency,
                "steps": self.cap_steps,
                "sandboxMinutes": self.cap_sandbox_minutes,
                "modelRequests": self.cap_model_requests,
                "tokens": self.cap_tokens,
            },
            "lanes": dict(LANE_PRIORITY),
            "priorityRange": [1, 1000],
            "queues": {
                engine.INTENT_QUEUE: {"globalConcurrency": self.global_concurrency},
                engine.PARTITIONED_QUEUE: {
                    "globalConcurrency": self.global_concurrency,
                    "partitionConcurrency": self.partition_concurrency,
                },
            },
            "env": {
                "caps": [
                    "SISU_CAP_CONCURRENCY",
                    "SISU_CAP_STEPS",
                    "SISU_CAP_SANDBOX_MINUTES",
                    "SISU_CAP_MODEL_REQUESTS",
                    "SISU_CAP_TOKENS",
                ],
                "concurrency": ["SISU_GLOBAL_CONCURRENCY", "SISU_PARTITION_CONCURRENCY"],
            },
            "raw": asdict(self),
        }


# A run's model budget, declared in its intent's constraints, and the cap bounding each.
BUDGETS = (("maxModelRequests", "cap_model_requests"), ("maxTokens", "cap_tokens"))


def check_budgets(constraints: dict[str, Any], policy: QueuePolicy) -> None:
    """Fail closed at run start: a model budget must be a positive whole number within its
    cap. (The compiler stops a run that reaches its budget with `budget_exceeded`.)"""
    for field, cap_name in BUDGETS:
        value = constraints.get(field)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValidationFailed(
                f"constraints.{field} must be a whole number of at least 1",
                details=[{"field": f"constraints.{field}", "value": value}],
            )
        cap = getattr(policy, cap_name)
        if value > cap:
            raise QueuePolicyViolation(
                f"constraints.{field} = {value} exceeds the cap of {cap}",
                details={"field": f"constraints.{field}", "value": value, "cap": cap},
            )


def check_command_timeout(constraints: dict[str, Any], policy: QueuePolicy) -> None:
    """Fail closed at run start: a sandboxed command's `constraints.timeoutSeconds` must be a
    positive number within SISU_CAP_SANDBOX_MINUTES."""
    value = constraints.get("timeoutSeconds")
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ValidationFailed(
            "constraints.timeoutSeconds must be a positive number of seconds",
            details=[{"field": "constraints.timeoutSeconds", "value": value}],
        )
    cap = policy.cap_sandbox_minutes * 60
    if value > cap:
        raise QueuePolicyViolation(
            f"constraints.timeoutSeconds = {value} exceeds the cap of {cap} "
            "(SISU_CAP_SANDBOX_MINUTES x 60)",
            details={"field": "constraints.timeoutSeconds", "value": value, "cap": cap},
        )


@dataclass(frozen=True)
class Placement:
    """Where and how a run is enqueued."""

    queue_name: str
    priority: int
    lane: str


def check(request: RunRequest, policy: QueuePolicy) -> Placement:
    """Fail closed: a breach raises before any write."""
    if request.workload is not None:
        for field, value, cap in (
            ("concurrency", request.workload.concurrency, policy.cap_concurrency),
            ("steps", request.workload.steps, policy.cap_steps),
            ("sandboxMinutes", request.workload.sandbox_minutes, policy.cap_sandbox_minutes),
        ):
            if value is not None and value > cap:
                raise QueuePolicyViolation(
                    f"workload.{field} = {value} exceeds the cap of {cap}",
                    details={"field": f"workload.{field}", "value": value, "cap": cap},
                )
    if request.queue_partition_key and request.deduplication_id:
        raise ValidationFailed(
            "deduplicationId cannot be combined with queuePartitionKey "
            "(DBOS does not deduplicate on partitioned queues)",
            details=[{"field": "deduplicationId"}, {"field": "queuePartitionKey"}],
        )
    return Placement(
        queue_name=engine.PARTITIONED_QUEUE if request.queue_partition_key else engine.INTENT_QUEUE,
        priority=request.priority or LANE_PRIORITY[request.lane],
        lane=request.lane,
    )
