"""Every Prometheus metric sisu exposes, by name: what a worker counts as it works, what the
api-shim counts per request, the gauges read from the database (cached, so that scrapes never
query it more often than the cache allows), and the `/metrics` pages that serve them.

prometheus_client and psycopg are imported on first use: a read command that imports a module
which records a metric stays light."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any

from sisu import __version__, names

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Histogram
    from prometheus_client.metrics_core import Metric

log = logging.getLogger("sisu.metrics")

# The Prometheus text exposition format, version 0.0.4: what every scraper reads.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# -- the names (counters are declared without `_total`, which prometheus_client appends) -------
RUNS_ENDED = "sisu_runs"  # sisu_runs_total{status}
STEP_DURATION = "sisu_step_duration_seconds"
STEP_ATTEMPTS = "sisu_step_attempts"  # sisu_step_attempts_total{step,outcome}
MODEL_TOKENS = "sisu_model_tokens"  # sisu_model_tokens_total{model,kind}
DELIVERIES = "sisu_deliveries"  # sisu_deliveries_total{executor,outcome}
SANDBOX_COMMANDS = "sisu_sandbox_commands"  # sisu_sandbox_commands_total{outcome}
FAILOVER_SWEEPS = "sisu_failover_sweeps"  # sisu_failover_sweeps_total{outcome}
HTTP_REQUESTS = "sisu_http_requests"  # sisu_http_requests_total{method,route,status}
HTTP_DURATION = "sisu_http_request_duration_seconds"
QUEUE_DEPTH = "sisu_queue_depth"
QUEUE_IN_PROGRESS = "sisu_queue_in_progress"
QUEUE_OLDEST = "sisu_queue_oldest_age_seconds"
RUNS_IN_FLIGHT = "sisu_runs_in_flight"
RUNS_WAITING_INPUT = "sisu_runs_waiting_input"
HEARTBEAT_AGE = "sisu_worker_heartbeat_age_seconds"
DATABASE_UP = "sisu_database_up"
BUILD_INFO = "sisu_build_info"

# -- the label values: every label has a bounded set, and a run id is never one ----------------
ENDED_STATUSES = tuple(s for s in names.RUN_STATUSES if s in names.TERMINAL_STATUSES)
IN_FLIGHT_STATUSES = tuple(s for s in names.RUN_STATUSES if s not in names.TERMINAL_STATUSES)
# The four stable steps (one `app.run_steps` row per attempt), and an outside executor's work
# (the sandboxed command, the webhook's POSTs), which runs before ExecuteST records it.
STEPS = names.STEP_IDS
PERFORM_STEP = "PerformST"
OUTCOMES = ("succeeded", "transient", "failed")
SWEEP_OUTCOMES = ("ok", "error")
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED_ROUTE = "unmatched"  # a path no route of the shim serves
NO_LANE = "none"  # a queued workflow that is no sisu run (a crash-demo drill)

STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

DEFAULT_CACHE_SECONDS = 5.0
# A scrape waits at most this long for the database; then it answers without its gauges.
DATABASE_TIMEOUT_SECONDS = 2


def outcome_of(error_code: str | None) -> str:
    """An attempt's outcome from its error's code (`StepError.code`): transient or failed."""
    return "transient" if error_code == "transient" else "failed"


# -- what a worker counts -------------------------------------------------------------------


@dataclass(frozen=True)
class _WorkerMetrics:
    runs: Counter
    step_duration: Histogram
    step_attempts: Counter
    tokens: Counter
    deliveries: Counter
    sandbox_commands: Counter
    failover_sweeps: Counter

    def collectors(self) -> list[Any]:
        return [
            self.runs,
            self.step_duration,
            self.step_attempts,
            self.tokens,
            self.deliveries,
            self.sandbox_commands,
            self.failover_sweeps,
        ]


def _prometheus() -> Any:
    import prometheus_client

    # A `_created` series beside every counter and histogram is noise to every dashboard.
    prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
    return prometheus_client


@cache
def _worker() -> _WorkerMetrics:
    """The process's counters, made on first use and registered on no registry: the worker's
    page registers them (an in-process test may make many pages, never two of one name)."""
    p = _prometheus()
    metrics = _WorkerMetrics(
        runs=p.Counter(
            RUNS_ENDED,
            "Runs this worker process ended, by final status, counted once the transaction "
            "that ended the run committed.",
            ["status"],
            registry=None,
        ),
        step_duration=p.Histogram(
            STEP_DURATION,
            "Each step attempt this worker ran, from its start to its commit or failure; "
            "PerformST is an outside executor's work before ExecuteST records it.",
            ["step"],
            buckets=STEP_BUCKETS,
            registry=None,
        ),
        step_attempts=p.Counter(
            STEP_ATTEMPTS,
            "Step attempts this worker ran, by step and outcome (succeeded, transient: to be "
            "retried, failed: for good).",
            ["step", "outcome"],
            registry=None,
        ),
        tokens=p.Counter(
            MODEL_TOKENS,
            "Tokens of the model requests this worker sent, by model and kind (input, output).",
            ["model", "kind"],
            registry=None,
        ),
        deliveries=p.Counter(
            DELIVERIES,
            "Effects this worker delivered to an outside system (mock: a receipt; http: a POST), "
            "by executor and outcome.",
            ["executor", "outcome"],
            registry=None,
        ),
        sandbox_commands=p.Counter(
            SANDBOX_COMMANDS,
            "Test commands this worker ran in the sandbox, by outcome (succeeded, failed, "
            "timeout).",
            ["outcome"],
            registry=None,
        ),
        failover_sweeps=p.Counter(
            FAILOVER_SWEEPS,
            "Failover sweeps this worker finished, looking for dead workers of its app version "
            "(ok, error: retried on the next tick). A worker whose count stops rising recovers "
            "no one.",
            ["outcome"],
            registry=None,
        ),
    )
    # Known series start at 0, so that a rate over them exists before the first event.
    for status in ENDED_STATUSES:
        metrics.runs.labels(status)
    for step in STEPS:
        metrics.step_duration.labels(step)
        for outcome in OUTCOMES:
            metrics.step_attempts.labels(step, outcome)
    for outcome in SWEEP_OUTCOMES:
        metrics.failover_sweeps.labels(outcome)
    return metrics


def run_ended(status: str) -> None:
    """A run this worker ended; call after the transaction that ended it committed."""
    _worker().runs.labels(status).inc()


def step_attempt(step: str, outcome: str, seconds: float) -> None:
    """One attempt of a step this worker ran (not a replay of a recorded one)."""
    w = _worker()
    w.step_duration.labels(step).observe(max(seconds, 0.0))
    w.step_attempts.labels(step, outcome).inc()


def model_tokens(model: str, input_tokens: int | None, output_tokens: int | None) -> None:
    """The tokens of one model request this worker sent."""
    w = _worker()
    for kind, n in (("input", input_tokens), ("output", output_tokens)):
        if n:
            w.tokens.labels(model, kind).inc(n)


def delivery(executor: str, outcome: str) -> None:
    """One effect this worker sent to an outside system, and how it went."""
    _worker().deliveries.labels(executor, outcome).inc()


def sandbox_command(outcome: str) -> None:
    """One test command this worker ran in the sandbox, and how it ended."""
    _worker().sandbox_commands.labels(outcome).inc()


def failover_sweep(outcome: str) -> None:
    """One failover sweep this worker finished (`ok`), or that failed (`error`)."""
    _worker().failover_sweeps.labels(outcome).inc()


# -- what the database says (cached) ---------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """The database gauges as read once; `up` False: the read failed and there are none."""

    up: bool
    # (queue, lane) -> (enqueued, in progress, age of the oldest enqueued in seconds or None)
    queues: dict[tuple[str, str], tuple[int, int, float | None]] = field(default_factory=dict)
    in_flight: dict[str, int] = field(default_factory=dict)
    heartbeat_ages: dict[str, float] = field(default_factory=dict)


def _read(url: str, dead_after_seconds: float) -> Snapshot:
    """Three cheap reads on a short connection of its own (autocommit: no transaction stays
    open): queue depth from DBOS's in-flight index, the runs in flight from app.runs' status
    index, and the live workers' heartbeats."""
    import psycopg
    from psycopg.rows import dict_row

    from sisu.db.queries import q

    timeout_ms = DATABASE_TIMEOUT_SECONDS * 1000
    with psycopg.connect(
        url,
        autocommit=True,
        row_factory=dict_row,
        connect_timeout=DATABASE_TIMEOUT_SECONDS,
        application_name="sisu-metrics",
        options=f"-c statement_timeout={timeout_ms}",
    ) as conn:
        depth = conn.execute(q("queue_depth")).fetchall()
        states = conn.execute(q("metrics_runs_in_flight")).fetchall()
        beats = conn.execute(
            q("metrics_worker_heartbeats"), {"dead_after_seconds": dead_after_seconds}
        ).fetchall()
    queues: dict[tuple[str, str], tuple[int, int, float | None]] = {}
    for r in depth:
        key = (str(r["queue_name"]), str(r["lane"] or NO_LANE))
        enqueued, in_progress, oldest = queues.get(key, (0, 0, None))
        if r["status"] == "ENQUEUED":
            age = float(r["oldest_age_seconds"])
            enqueued += int(r["n"])
            oldest = age if oldest is None else max(oldest, age)
        else:
            in_progress += int(r["n"])
        queues[key] = (enqueued, in_progress, oldest)
    in_flight = dict.fromkeys(IN_FLIGHT_STATUSES, 0)
    in_flight.update({str(r["status"]): int(r["n"]) for r in states})
    return Snapshot(
        up=True,
        queues=queues,
        in_flight=in_flight,
        heartbeat_ages={str(r["executor_id"]): float(r["age_seconds"]) for r in beats},
    )


def _intent_queues() -> list[tuple[str, str]]:
    from sisu import engine
    from sisu.contracts.runs import LANE_PRIORITY

    return [
        (q, lane) for q in (engine.INTENT_QUEUE, engine.PARTITIONED_QUEUE) for lane in LANE_PRIORITY
    ]


class DatabaseGauges:
    """The gauges read from the database, at most once per `cache_seconds` however often (and
    however many at once) scrapes come. A read that fails answers `up` False, without gauges,
    and is not tried again before the cache expires: a scrape never fails, and a database that
    is down is not hammered."""

    def __init__(
        self,
        url: str,
        *,
        cache_seconds: float = DEFAULT_CACHE_SECONDS,
        dead_after_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        read: Callable[[str, float], Snapshot] = _read,
    ) -> None:
        self.url = url
        self.cache_seconds = cache_seconds
        self.dead_after_seconds = dead_after_seconds
        self._clock = clock
        self._read = read
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._taken = -math.inf
        # sisu's queues in every lane, and every other (queue, lane) seen so far: a queue that
        # is empty reads 0 instead of vanishing.
        self._seen: set[tuple[str, str]] = set(_intent_queues())

    def snapshot(self) -> Snapshot:
        with self._lock:
            if self._snapshot is None or self._clock() - self._taken >= self.cache_seconds:
                self._snapshot = self._fresh()
                self._taken = self._clock()
            return self._snapshot

    def _fresh(self) -> Snapshot:
        try:
            snap = self._read(self.url, self.dead_after_seconds)
        except Exception as exc:
            log.warning("metrics: cannot read the database: %s", " ".join(str(exc).split()))
            return Snapshot(up=False)
        self._seen.update(snap.queues)
        queues = {key: snap.queues.get(key, (0, 0, None)) for key in sorted(self._seen)}
        return Snapshot(True, queues, snap.in_flight, snap.heartbeat_ages)

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        snap = self.snapshot()
        yield GaugeMetricFamily(
            DATABASE_UP,
            "1 if the last read of the database gauges succeeded; 0: they are absent.",
            value=1 if snap.up else 0,
        )
        if not snap.up:
            return
        depth = GaugeMetricFamily(
            QUEUE_DEPTH, "Runs enqueued and not yet taken by a worker.", labels=["queue", "lane"]
        )
        in_progress = GaugeMetricFamily(
            QUEUE_IN_PROGRESS,
            "Runs a worker took from the queue and has not finished (running, sleeping before "
            "a retry, or waiting for a human).",
            labels=["queue", "lane"],
        )
        oldest = GaugeMetricFamily(
            QUEUE_OLDEST,
            "How long the oldest run still enqueued has waited (0 when none waits).",
            labels=["queue", "lane"],
        )
        for (queue, lane), (n_enqueued, n_in_progress, age) in snap.queues.items():
            depth.add_metric([queue, lane], n_enqueued)
            in_progress.add_metric([queue, lane], n_in_progress)
            oldest.add_metric([queue, lane], age or 0.0)
        yield from (depth, in_progress, oldest)
        runs = GaugeMetricFamily(
            RUNS_IN_FLIGHT,
            "Runs not yet ended, by status (app.runs; ended runs: rate(sisu_runs_total)).",
            labels=["status"],
        )
        for status, n in snap.in_flight.items():
            runs.add_metric([status], n)
        yield runs
        yield GaugeMetricFamily(
            RUNS_WAITING_INPUT,
            "Runs waiting for a human's answer (status waiting_input).",
            value=snap.in_flight.get("waiting_input", 0),
        )
        ages = GaugeMetricFamily(
            HEARTBEAT_AGE,
            "Seconds since each live worker's last heartbeat (app.workers).",
            labels=["executor_id"],
        )
        for executor_id, age in sorted(snap.heartbeat_ages.items()):
            ages.add_metric([executor_id], age)
        yield ages


# -- what the api-shim counts ----------------------------------------------------------------


class HttpMetrics:
    """The api-shim's requests, by method, route template (never the raw path) and status."""

    def __init__(self) -> None:
        p = _prometheus()
        self.requests: Counter = p.Counter(
            HTTP_REQUESTS,
            "Requests the api-shim answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=None,
        )
        self.duration: Histogram = p.Histogram(
            HTTP_DURATION,
            "Time to answer a request, by method and route template.",
            ["method", "route"],
            buckets=HTTP_BUCKETS,
            registry=None,
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        method = method if method in HTTP_METHODS else "other"
        self.requests.labels(method, route, str(status)).inc()
        self.duration.labels(method, route).observe(max(seconds, 0.0))

    def collectors(self) -> list[Any]:
        return [self.requests, self.duration]


# -- the pages -------------------------------------------------------------------------------


class _BuildInfo:
    def __init__(self, labels: dict[str, str]) -> None:
        self.labels = labels

    def collect(self) -> Iterable[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        info = GaugeMetricFamily(
            BUILD_INFO, "Always 1: which sisu this is.", labels=list(self.labels)
        )
        info.add_metric(list(self.labels.values()), 1)
        yield info


def _page(collectors: Iterable[Any], labels: dict[str, str]) -> CollectorRegistry:
    p = _prometheus()
    from prometheus_client.platform_collector import PlatformCollector
    from prometheus_client.process_collector import ProcessCollector

    registry: CollectorRegistry = p.CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    for collector in (_BuildInfo({"version": __version__, **labels}), *collectors):
        registry.register(collector)
    return registry


def worker_page(gauges: DatabaseGauges, *, app_version: str) -> CollectorRegistry:
    """A worker's page: its own counters and histograms, and the database gauges."""
    return _page([*_worker().collectors(), gauges], {"app_version": app_version})


def shim_page(gauges: DatabaseGauges, http: HttpMetrics, *, app_version: str) -> CollectorRegistry:
    """The api-shim's page: its requests, and the database gauges."""
    return _page([*http.collectors(), gauges], {"app_version": app_version})


def render(registry: CollectorRegistry) -> bytes:
    """The page in the text exposition format (`CONTENT_TYPE`)."""
    from prometheus_client.exposition import generate_latest

    return generate_latest(registry)
