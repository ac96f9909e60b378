"""Operator command results: `sisu db status`, `sisu crashdemo`, `sisu gc`, and the like."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from sisu.contracts.base import Contract


class SchemaState(Contract):
    current: str | None
    latest: str | None
    pending: list[str]


class DbStatus(Contract):
    mode: Literal["embedded", "external"]
    running: bool
    url: str | None
    server_version: str | None
    data_dir: str | None
    app_schema: SchemaState | None
    dbos_schema_version: int | None


class MarkCounts(Contract):
    s1: int
    s2: int


class CrashDemoResult(Contract):
    ok: bool
    workflow_id: str
    status: str | None
    marks: MarkCounts
    killed_pid: int
    resumed_pid: int
    killed_at: datetime
    elapsed_seconds: float


class AuditCheck(Contract):
    name: str
    ok: bool
    count: int
    detail: list[dict[str, Any]]
    description: str
    sql: str | None = None
    # A failing "error" check breaks a law and fails the audit; a "warning" check only shows
    # rows worth a look (its own ok is false) and leaves the report's ok and exit code alone.
    severity: Literal["error", "warning"] = "error"


class AuditReport(Contract):
    ok: bool
    run_id: str | None
    checks: list[AuditCheck]
    # Warning checks that found rows; they never make ok false.
    warnings: int = 0


class Finding(Contract):
    """One line of the triage table: what is wrong, how it was checked, what fixes it."""

    name: str
    ok: bool
    symptom: str
    check: str
    fix: str | None
    detail: Any = None


class DoctorReport(Contract):
    ok: bool
    findings: list[Finding]


class Percentiles(Contract):
    p50: float | None
    max: float | None


class KillRecord(Contract):
    """One injected fault, with the evidence of where it landed."""

    iteration: int
    fault: str
    point: str
    run_id: str | None
    at: datetime
    pid: int | None
    receipts_at_kill: int
    execute_done_at_kill: bool
    recovery_seconds: float | None


class ChaosResult(Contract):
    ok: bool
    iterations: int
    kills: int
    runs: int
    succeeded: int
    duplicates: int
    pending_left: int
    recovery_seconds: Percentiles
    audit_ok: bool
    skipped: str | None = None
    kill_log: list[KillRecord]
    # shim-kill only: intents the drill's clients created, accepted or not; must equal runs.
    intents: int | None = None


class LatencyMs(Contract):
    p50: float | None
    p99: float | None


class BurstLatency(Contract):
    """Latencies while all N runs were submitted at once: mostly time spent queued."""

    enqueue_to_start_ms: LatencyMs
    run_ms: LatencyMs
    baseline_enqueue_to_start_ms: LatencyMs
    baseline_run_ms: LatencyMs


class CpuMs(Contract):
    """CPU milliseconds (user + system) per run during a throughput burst."""

    workers: float
    # None when the database server is not on this machine (`CpuPerRun.postgres_note` says why).
    postgres: float | None
    total: float | None


class CpuPerRun(Contract):
    sisu: CpuMs
    baseline: CpuMs
    tx_baseline: CpuMs
    postgres_note: str | None = None


class BenchResult(Contract):
    intents: int
    workers: int
    seconds: float
    intents_per_sec: float
    baseline_per_sec: float
    ratio: float
    # The equal-work baseline: the same durable work as a sisu run, written by hand on DBOS.
    tx_baseline_per_sec: float
    tx_ratio: float
    cpu_ms_per_run: CpuPerRun
    # Latencies at a steady rate below capacity (`paced_per_sec`, `paced_runs` runs of each).
    enqueue_to_start_ms: LatencyMs
    run_ms: LatencyMs
    baseline_enqueue_to_start_ms: LatencyMs
    baseline_run_ms: LatencyMs
    paced_per_sec: float
    paced_runs: int
    burst: BurstLatency
    # Runs that did not end in SUCCESS: the figures of a bench with failures are not valid.
    failed_runs: int
    baseline_failed_runs: int
    tx_baseline_failed_runs: int
    database: str


class GcReport(Contract):
    """What `sisu gc` removed (or, with --dry-run, would remove)."""

    runs: int
    dry_run: bool
    older_than: str
    # Runs last updated before this moment (the database's clock) were eligible.
    cutoff: datetime
    by_status: dict[str, int]
    # Rows removed per table, `schema.table`; every table gc touches is listed, zeros too.
    rows: dict[str, int]
    # Folders removed under $SISU_HOME: workspaces/<runId> and logs/runs/<runId>.
    workspaces: int
    logs: int
    # Folders of removed runs that could not be removed (their rows are gone): remove by hand.
    unremoved: list[str]


class ReadTiming(Contract):
    """One read's latency in milliseconds, through the service layer and over HTTP (None: the
    api-shim has no route for this read)."""

    p50_ms: float | None
    p95_ms: float | None
    http_p50_ms: float | None
    http_p95_ms: float | None


class HistoryResult(Contract):
    """`sisu bench --history N`: each read command's latency on N runs of history."""

    history: int
    reads: dict[str, ReadTiming]
    build_seconds: float
    statuses: dict[str, int]
    database_bytes: int
    database: str
