"""`sisu top --json`: one frame of the live dashboard, every number read in one snapshot."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from sisu.contracts.base import Contract


class TopRuns(Contract):
    """Runs by status. Queued, running and waiting runs are always counted exactly; the
    finished ones exactly too while the history is small (or with --exact), else estimated
    from the planner's statistics of app.runs (`finishedCounts: "estimated"`)."""

    by_status: dict[str, int]
    total: int
    in_flight: int
    finished_counts: Literal["exact", "estimated"]
    # When the statistics the estimates come from were gathered (ANALYZE); None when exact.
    statistics_at: datetime | None = None


class TopLane(Contract):
    """Queue depth of one lane, from DBOS's in-flight workflows on sisu's queues."""

    lane: str | None
    # Waiting for a worker (ENQUEUED).
    queued: int
    # Taken by a worker (PENDING): executing a step, sleeping before a retry, or waiting for a
    # human.
    in_flight: int
    oldest_queued_age_seconds: float | None


class TopWindow(Contract):
    """Runs that reached a terminal status in the last `minutes` minutes."""

    minutes: int
    finished: int
    succeeded: int
    per_second: float


class TopThroughput(Contract):
    windows: list[TopWindow]
    # Runs finished in each of the last 15 minutes, the oldest minute first (the sparkline).
    per_minute: list[int]


class TopLatency(Contract):
    """Step attempt latency: finished_at - started_at of each attempt, in milliseconds."""

    # None: every step together.
    step_id: str | None
    attempts: int
    p50_ms: float | None
    p95_ms: float | None


class TopStepLatency(Contract):
    """Over the attempts that finished in the last `window_minutes` minutes, in the (at most
    `sample_limit`) runs that finished last in that window."""

    window_minutes: int
    sample_limit: int
    runs: int
    all: TopLatency
    by_step: list[TopLatency]


class TopWorker(Contract):
    executor_id: str
    host: str
    pid: int
    app_version: str
    alive: bool
    heartbeat_age_seconds: float
    # Runs this worker has taken and not finished (its PENDING workflows).
    in_flight: int


class TopInbox(Contract):
    count: int
    oldest_age_seconds: float | None


class TopFailure(Contract):
    run_id: str
    status: str
    code: str | None
    step: str | None
    message: str | None
    updated_at: datetime
    age_seconds: float


class TopFrame(Contract):
    # The database's clock when the frame was read.
    at: datetime
    runs: TopRuns
    lanes: list[TopLane]
    throughput: TopThroughput
    step_latency: TopStepLatency
    inbox: TopInbox
    # Workers that have not stopped: alive, or silent since they died. At most 20.
    workers: list[TopWorker]
    # The last runs that failed or ran out of attempts, newest first.
    failures: list[TopFailure]
