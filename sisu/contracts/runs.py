"""Intents and runs on the wire: the HTTP bodies and the CLI's `--json` output are these models."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, Strict, WithJsonSchema, model_validator

from sisu import names
from sisu.contracts.base import WHOLE, Contract, JsonList, JsonObject, Text

RunStatus = Literal[
    "queued", "running", "waiting_input", "succeeded", "failed", "canceled", "retries_exceeded"
]
RUN_STATUSES: tuple[str, ...] = RunStatus.__args__  # type: ignore[attr-defined]
TERMINAL_STATUSES = names.TERMINAL_STATUSES
NextAction = Literal["REPAIR", "INPUT"]
STEP_IDS = names.STEP_IDS


def scripted_plan(inputs: dict[str, Any]) -> tuple[list[dict[str, str]] | None, str | None]:
    """A scripted plan's files (`inputs.files`: [{path, content}]) and test command
    (`inputs.testCommand`), checked: a CI job runs a known change without a model. Raises
    ValueError saying what is wrong (the intent contract calls this before anything is
    written)."""
    files, command = inputs.get("files"), inputs.get("testCommand")
    well_formed = isinstance(files, list) and all(
        isinstance(f, dict)
        and set(f) == {"path", "content"}
        and isinstance(f["path"], str)
        and f["path"]
        and isinstance(f["content"], str)
        for f in files
    )
    if files is not None and not well_formed:
        raise ValueError("inputs.files must be a list of {path, content} with string values")
    if command is not None and (not isinstance(command, str) or not command.strip()):
        raise ValueError("inputs.testCommand must be a non-empty string")
    return files, command


class IntentCreate(Contract):
    """POST /intents"""

    goal: Text = Field(min_length=1, max_length=4000)
    inputs: JsonObject = Field(default_factory=dict)
    constraints: JsonObject = Field(default_factory=dict)
    connectors: JsonList = Field(default_factory=list)
    # A local git repository the run works on, and the ref (default HEAD) whose commit the
    # intent pins at create time.
    repo: Text | None = Field(default=None, min_length=1, max_length=4096)
    ref: Text | None = Field(default=None, min_length=1, max_length=255)

    @model_validator(mode="after")
    def _consistent(self) -> IntentCreate:
        if self.ref is not None and self.repo is None:
            raise ValueError("ref needs repo: a ref names a commit of the intent's repository")
        scripted_plan(self.inputs)
        if not isinstance(self.constraints.get("requireApproval", False), bool):
            raise ValueError("constraints.requireApproval must be true or false")
        return self


class IntentCreated(Contract):
    intent_id: str


Lane = Literal["interactive", "batch"]
DedupePolicy = Literal["reject", "join"]
# A run's default priority by lane; lower runs sooner (DBOS queue priority).
LANE_PRIORITY: dict[str, int] = {"interactive": 10, "batch": 100}


class Workload(Contract):
    """What a run says it will need; checked against the configured caps before any write."""

    concurrency: Annotated[int, Strict(), Field(ge=1), WHOLE] | None = None
    steps: Annotated[int, Strict(), Field(ge=1), WHOLE] | None = None
    sandbox_minutes: Annotated[int, Strict(), Field(ge=1), WHOLE] | None = None


class RunRequest(Contract):
    """POST /intents/{id}/run"""

    # DBOS does not deduplicate on a partitioned queue: the schema says the two do not mix.
    model_config = ConfigDict(
        json_schema_extra={
            "not": {
                "required": ["deduplicationId", "queuePartitionKey"],
                "properties": {
                    "deduplicationId": {"type": "string"},
                    "queuePartitionKey": {"type": "string"},
                },
            }
        }
    )

    trace_id: Text | None = Field(default=None, min_length=1, max_length=200)
    lane: Lane = "batch"
    priority: Annotated[int, Strict(), Field(ge=1, le=1000), WHOLE] | None = None
    deduplication_id: Text | None = Field(default=None, min_length=1, max_length=200)
    dedupe_policy: DedupePolicy = "reject"
    queue_partition_key: Text | None = Field(default=None, min_length=1, max_length=200)
    workload: Workload | None = None


class RunStarted(Contract):
    run_id: str
    workflow_id: str
    intent_id: str
    status: RunStatus


class StepView(Contract):
    step_id: str
    attempt: int
    phase: str
    output: Any
    error: Any
    started_at: datetime | None
    finished_at: datetime | None


class ArtifactView(Contract):
    step_id: str
    idx: int
    kind: str
    uri: str | None
    inline: Any
    sha256: str


class CompilerView(Contract):
    """Which compiler (and model) planned the run, and what its calls cost."""

    name: str
    model: str | None
    requests: int
    input_tokens: int | None
    output_tokens: int | None


class CompilerCall(Contract):
    """One recorded compiler call (a model request, for a model compiler)."""

    id: int
    step_id: str
    compiler: str
    model: str | None
    attempt: int
    request: Any
    response: Any
    error: Any
    input_tokens: int | None
    output_tokens: int | None
    latency_ms: int | None
    created_at: datetime


class RunView(Contract):
    """The full state of one run; the key order is part of the contract."""

    run_id: str
    intent_id: str
    workflow_id: str
    status: RunStatus
    next_action: NextAction | None
    last_step: str | None
    retry_count: int
    trace_id: str | None
    lane: Lane
    priority: int | None
    compiler: CompilerView | None
    steps: list[StepView]
    artifacts: list[ArtifactView]
    created_at: datetime
    updated_at: datetime


class RunSummary(Contract):
    run_id: str
    intent_id: str
    status: RunStatus
    next_action: NextAction | None
    last_step: str | None
    retry_count: int
    trace_id: str | None
    lane: Lane
    priority: int | None
    created_at: datetime
    updated_at: datetime


# A page's cursor: opaque to clients (sisu.service.paging makes and reads it), and good only for
# the list that gave it out. Its schema names a format of its own per list, so that a client, or
# a generator of test requests, knows not to make one up.
MAX_CURSOR_CHARS = 512


def cursor_format(list_name: str) -> str:
    return f"sisu-cursor-{list_name}"


def _cursor_schema(list_name: str) -> WithJsonSchema:
    return WithJsonSchema(
        {"type": "string", "format": cursor_format(list_name), "maxLength": MAX_CURSOR_CHARS}
    )


RunsCursor = Annotated[str, _cursor_schema("runs")]
InboxCursor = Annotated[str, _cursor_schema("inbox")]
NEXT_DESCRIPTION = (
    "The cursor of the next page: pass it as `after` (CLI `--after`). Null on the last page."
)


class RunPage(Contract):
    """A page of runs, newest first: GET /runs and `sisu run list --json`."""

    items: list[RunSummary]
    next: RunsCursor | None = Field(description=NEXT_DESCRIPTION)


class ErrorBody(Contract):
    error: str
    message: str
    details: Any = None


class EventRequest(Contract):
    """POST /runs/{id}/events: an `input` answers a run's question; an `approval`
    ({"approved": bool, "reason"?}) approves or rejects a change at its approval gate."""

    type: Literal["input", "approval"]
    payload: JsonObject
    idempotency_key: Text | None = Field(default=None, min_length=1, max_length=200)


class EventAccepted(Contract):
    accepted: bool
    duplicate: bool = False


class RetryAccepted(Contract):
    accepted: bool
    run_id: str
    from_step: str


class CancelAccepted(Contract):
    accepted: bool
    run_id: str
    status: RunStatus


class InboxItem(Contract):
    run_id: str
    question: str
    answer_schema: dict[str, Any]
    asked_at: datetime
    age_seconds: float
    time_left_seconds: float


class InboxPage(Contract):
    """A page of the runs waiting for a human, longest waiting first: GET /inbox and
    `sisu run inbox --json`."""

    items: list[InboxItem]
    next: InboxCursor | None = Field(description=NEXT_DESCRIPTION)


class WorkerBeat(Contract):
    executor_id: str
    app_version: str
    host: str | None
    pid: int | None
    heartbeat_at: str


class HealthView(Contract):
    """GET /healthz: 200 with the database up, 503 (and `error`) with it down."""

    ok: bool
    db: Literal["up", "down"]
    app_version: str
    workers: list[WorkerBeat]
    error: str | None = None
