"""`sisu bench --history N`: how fast each read command answers on a database that has grown for
months. A real worker makes a few real runs of every status; set-based SQL copies them, with
fresh ids and created_at spread over months, across every `app.*` and `dbos.*` table that holds
a run's rows, until N runs exist; then each read is timed through the service layer and, where
the api-shim has a route for it, over HTTP against a real `sisu serve`."""

from __future__ import annotations

import math
import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple

import psycopg
from psycopg import sql

from sisu.config import Settings
from sisu.contracts.ops import HistoryResult, ReadTiming
from sisu.contracts.runs import EventRequest, IntentCreate, RunRequest
from sisu.db.connection import connect
from sisu.db.url import redact
from sisu.drills.bench import scratch_database
from sisu.drills.processes import WorkerProcess, wait_for
from sisu.service import human, intents, views
from sisu.service.backend import Backend

Progress = Callable[[str, int, int], None]

# -- the real runs ---------------------------------------------------------------------------

ASK = "please ask the operator which answer to record"


@dataclass(frozen=True)
class Seed:
    """One kind of real run: how it is asked for, the status it settles in, the answer it
    then gets (if any) and the status it ends in, and its share of the built history (%)."""

    kind: str
    goal: str
    settles: str
    ends: str
    weight: int
    inputs: dict[str, Any]
    constraints: dict[str, Any]
    answer: EventRequest | None = None


SEEDS: tuple[Seed, ...] = (
    Seed("succeeded", "record the nightly figures", "succeeded", "succeeded", 78, {}, {}),
    Seed(
        "answered", ASK, "waiting_input", "succeeded", 5, {}, {},
        EventRequest(type="input", payload={"answer": "yes"}),
    ),
    # A question nobody answers in time: the run fails with input_timeout.
    Seed("failed", ASK, "failed", "failed", 5, {}, {"inputTimeoutSeconds": 1}),
    # A step whose outside system keeps timing out: out of attempts, left for repair.
    Seed(
        "retries_exceeded", "deliver the figures", "retries_exceeded", "retries_exceeded", 5,
        {"faults": {"ExecuteST": {"kind": "net_timeout", "times": 99}}}, {},
    ),
    Seed("waiting_input", ASK, "waiting_input", "waiting_input", 5, {}, {}),
    Seed(
        "rejected", "change the report", "waiting_input", "canceled", 2, {},
        {"requireApproval": True},
        EventRequest(type="approval", payload={"approved": False, "reason": "not now"}),
    ),
)  # fmt: skip
SEEDS_PER_KIND = 3
# The share of the history that is copies of each kind: one slot per percent.
SLOTS = sum(s.weight for s in SEEDS)
# How far back the history goes, and the recent stretch in which the waiting runs were asked (a
# question older than its timeout, 24 h by default, would have failed by now).
HISTORY_DAYS = 180
WAITING_HOURS = 20
# Seed runs are retried fast: the history needs their rows, not their backoff.
SEED_RUN_POLICY = {"maxAttempts": 2, "backoffSeconds": 0.05}


def _submit(backend: Backend, seed: Seed, i: int) -> str:
    created = intents.create_intent(
        backend,
        IntentCreate(
            goal=f"{seed.goal} ({seed.kind} {i})",
            inputs={"tasks": 1 + i % 3, **seed.inputs},
            constraints=seed.constraints,
        ),
    )
    intents.start_run(backend, created.intent_id, RunRequest(trace_id="history"))
    return created.intent_id


def _statuses(url: str, ids: list[str]) -> dict[str, str]:
    with connect(url) as conn:
        rows = conn.execute(
            "SELECT id, status FROM app.runs WHERE id = ANY(%(ids)s)", {"ids": ids}
        ).fetchall()
    return {r["id"]: r["status"] for r in rows}


def _wait_statuses(url: str, wanted: dict[str, str], worker: WorkerProcess, what: str) -> None:
    def probe() -> bool | None:
        now = _statuses(url, list(wanted))
        return True if all(now.get(i) == s for i, s in wanted.items()) else None

    wait_for(what, probe, timeout=180, worker=worker, interval=0.1)


def real_runs(url: str, settings: Settings, progress: Progress) -> dict[str, Seed]:
    """SEEDS_PER_KIND real runs of each seed kind on one real worker, answered where their
    kind says, each settled in its final status; the worker is stopped before returning (its
    waiting runs stay PENDING on it, as a stopped worker's do). Returns run id → seed."""
    worker = WorkerProcess(
        url=url,
        executor_id=f"history-{uuid.uuid4().hex[:6]}",
        app_version=settings.app_version,
        log_path=settings.logs_dir / "bench" / "history-worker.log",
        # The built-in compiler and the mock outside system, whatever this environment names:
        # the copies are of sisu's own rows, never of a model's or a webhook's.
        extra_env={
            "SISU_HOME": str(settings.home),
            "SISU_COMPILER": "builtin",
            "SISU_EXECUTOR": "mock",
        },
    ).start()
    backend = Backend(url, app_version=settings.app_version, run_policy=SEED_RUN_POLICY)
    try:
        wait_for(
            f"worker {worker.executor_id}",
            partial(_heartbeat, url, worker.executor_id),
            timeout=60,
            worker=worker,
        )
        seeds = {_submit(backend, seed, i): seed for seed in SEEDS for i in range(SEEDS_PER_KIND)}
        progress("real runs", 0, len(seeds))
        _wait_statuses(url, {i: s.settles for i, s in seeds.items()}, worker, "the real runs")
        for run_id, seed in seeds.items():
            if seed.answer is not None:
                human.send_event(backend, run_id, seed.answer)
        _wait_statuses(url, {i: s.ends for i, s in seeds.items()}, worker, "the answered runs")
        progress("real runs", len(seeds), len(seeds))
    finally:
        backend.close()
        worker.stop()
    return seeds


def _heartbeat(url: str, executor_id: str) -> Any:
    with connect(url) as conn:
        return conn.execute(
            "SELECT 1 AS ok FROM app.workers WHERE executor_id = %s", (executor_id,)
        ).fetchone()


# -- the copies ------------------------------------------------------------------------------


class RunTable(NamedTuple):
    """A table holding rows of a run, and its column that holds the run id."""

    schema: str
    name: str
    run_column: str


# Parents before children (foreign keys). Every table a run writes to, sisu's and DBOS's
# (DBOS 3.4's schema: a workflow's status, inputs, outputs, step records, datasource
# checkpoints, messages, events and streams).
RUN_TABLES: tuple[RunTable, ...] = (
    RunTable("app", "intents", "id"),
    RunTable("app", "runs", "id"),
    RunTable("app", "run_steps", "run_id"),
    RunTable("app", "artifacts", "run_id"),
    RunTable("app", "opencode_calls", "run_id"),
    RunTable("app", "mock_receipts", "run_id"),
    RunTable("app", "human_events", "run_id"),
    RunTable("app", "deliveries", "run_id"),
    RunTable("dbos", "workflow_status", "workflow_uuid"),
    RunTable("dbos", "workflow_input", "workflow_uuid"),
    RunTable("dbos", "workflow_output", "workflow_uuid"),
    RunTable("dbos", "operation_outputs", "workflow_uuid"),
    RunTable("dbos", "datasource_outputs", "workflow_id"),
    RunTable("dbos", "notifications", "destination_uuid"),
    RunTable("dbos", "workflow_events", "workflow_uuid"),
    RunTable("dbos", "workflow_events_history", "workflow_uuid"),
    RunTable("dbos", "streams", "workflow_uuid"),
)
# Text columns that embed a run id in a key or a serialized value (a receipt's
# runId:ExecuteST:taskKey, an event's dedupe key, a workflow's serialized arguments): the copy
# gets its own id there too, so unique keys stay unique and a copy names itself.
ID_BEARING = frozenset(
    {"receipt_key", "dedupe_key", "idempotency_key", "inputs", "message", "child_workflow_id"}
)
# DBOS keeps times as epoch milliseconds in bigint columns named like these.
EPOCH_MS = re.compile(r"(_at|_epoch_ms|_timestamp)$")
BATCH = 10_000


def _column_copy(table: RunTable, column: dict[str, Any]) -> sql.Composable | None:
    """How a copy gets `column`: the new id, a shifted time, the seed's value; None: the
    column's default (a serial id, a random uuid)."""
    name, kind, default = column["column_name"], column["data_type"], column["column_default"]
    src = sql.SQL("s.{}").format(sql.Identifier(name))
    if name == table.run_column:
        return sql.SQL("m.new_id")
    if default and ("nextval(" in default or "gen_random_uuid" in default):
        return None
    if name in ID_BEARING and kind == "text":
        return sql.SQL("replace({}, m.seed_id, m.new_id)").format(src)
    if kind == "timestamp with time zone":
        return sql.SQL("{} + m.shift").format(src)
    if kind == "bigint" and EPOCH_MS.search(name):
        return sql.SQL("{} + m.shift_ms").format(src)
    if (table.name, name) == ("artifacts", "inline"):
        # A question card says when it was asked: the inbox's age and time left come from it.
        return sql.SQL(
            "CASE WHEN s.kind = 'question_card' AND s.inline ? 'askedAt' THEN jsonb_set("
            "s.inline, '{askedAt}', to_jsonb((s.inline ->> 'askedAt')::timestamptz + m.shift))"
            " ELSE s.inline END"
        )
    return src


def _seed_table(table: RunTable) -> sql.Identifier:
    return sql.Identifier(f"history_seed_{table.schema}_{table.name}")


def _copy_statement(conn: psycopg.Connection[Any], table: RunTable) -> sql.Composed | None:
    """INSERT … SELECT of one batch's copies of `table`'s seed rows; None if DBOS has no such
    table here."""
    columns = conn.execute(
        "SELECT column_name, data_type, column_default FROM information_schema.columns"
        " WHERE table_schema = %s AND table_name = %s AND is_generated = 'NEVER'"
        " ORDER BY ordinal_position",
        (table.schema, table.name),
    ).fetchall()
    if not columns:
        return None
    copied = [(c["column_name"], _column_copy(table, c)) for c in columns]
    kept = [(name, expr) for name, expr in copied if expr is not None]
    return sql.SQL(
        "INSERT INTO {table} ({columns}) SELECT {values} FROM history_map m"
        " JOIN {seed} s ON s.{run} = m.seed_id"
    ).format(
        table=sql.Identifier(table.schema, table.name),
        columns=sql.SQL(", ").join(sql.Identifier(name) for name, _ in kept),
        values=sql.SQL(", ").join(expr for _, expr in kept),
        seed=_seed_table(table),
        run=sql.Identifier(table.run_column),
    )


class Timeline(NamedTuple):
    """The copies, oldest first: `head` runs over the months before the waiting stretch, then
    `tail` runs in it, `waiting` of them still waiting for an answer. Built in this order, the
    tables hold them as a database that grew for months does, in roughly the order they were
    created: the runs still in flight (the waiting ones) near the end, not strewn over it."""

    head: int
    tail: int
    waiting: int


def timeline(copies: int) -> Timeline:
    waiting_weight = sum(s.weight for s in SEEDS if s.ends == "waiting_input")
    waiting = copies * waiting_weight // SLOTS
    others = copies - waiting
    recent = others * WAITING_HOURS // (HISTORY_DAYS * 24)
    return Timeline(head=others - recent, tail=recent + waiting, waiting=waiting)


def _slots(seeds: dict[str, Seed]) -> list[tuple[bool, int, str]]:
    """(waiting, slot, seed run id) rows: every kind that has finished gets as many slots as its
    weight, its seed runs taking turns; the waiting runs have slots of their own."""
    by_kind: dict[str, list[str]] = {}
    for run_id, seed in seeds.items():
        by_kind.setdefault(seed.kind, []).append(run_id)
    slots: list[tuple[bool, int, str]] = []
    for seed in SEEDS:
        ids = by_kind[seed.kind]
        waiting = seed.ends == "waiting_input"
        count = len(ids) if waiting else seed.weight
        for k in range(count):
            taken = sum(1 for w, _, _ in slots if w == waiting)
            slots.append((waiting, taken, ids[k % len(ids)]))
    return slots


# One batch of copies: which seed each copy g copies, its fresh id, and how far its times move.
# In the tail, copies are waiting ones at the rate `waiting / tail`, evenly spread.
_MAP_BATCH = """
WITH g AS (
    SELECT g.n, g.n >= %(head)s AS in_tail,
           g.n >= %(head)s
           AND (g.n - %(head)s + 1) * %(waiting)s / %(tail)s
               > (g.n - %(head)s) * %(waiting)s / %(tail)s AS waiting
    FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g(n)
), c AS (
    SELECT s.seed_id, gen_random_uuid()::text AS new_id, r.created_at AS seed_created_at,
           CASE WHEN g.in_tail
                THEN now() - %(recent)s::interval
                     + (g.n - %(head)s + random()) / %(tail)s * %(recent)s::interval
                ELSE now() - %(history)s::interval
                     + (g.n + random()) / %(head)s * (%(history)s::interval - %(recent)s::interval)
           END AS created_at
    FROM g
    -- a multiplier prime to the slot counts spreads the kinds evenly through a batch
    JOIN history_slots s ON s.waiting = g.waiting
     AND s.slot = g.n * 37 %% (CASE WHEN g.waiting THEN %(waiting_slots)s ELSE %(slots)s END)
    JOIN app.runs r ON r.id = s.seed_id
    ORDER BY g.n
)
INSERT INTO history_map (seed_id, new_id, shift, shift_ms)
SELECT seed_id, new_id, created_at - seed_created_at,
       round(extract(epoch FROM created_at - seed_created_at) * 1000)::bigint
FROM c
"""


def copy_runs(url: str, seeds: dict[str, Seed], count: int, progress: Progress) -> None:
    """Copies of the seed runs, in batches of BATCH runs per transaction, until `count` runs
    exist: every row of every RUN_TABLES table, with a fresh run id and its times shifted to
    its place on the timeline (HISTORY_DAYS long; the waiting runs in its last WAITING_HOURS)."""
    copies = count - len(seeds)
    with connect(url) as conn:
        # A scratch database: a crash loses the build anyway, so its commits need not wait
        # for the disk.
        conn.execute("SET synchronous_commit = off")
        conn.execute(
            "CREATE TEMP TABLE history_slots (waiting bool, slot int, seed_id text,"
            " PRIMARY KEY (waiting, slot))"
        )
        slots = _slots(seeds)
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO history_slots VALUES (%s, %s, %s)", slots)
        conn.execute(
            "CREATE TEMP TABLE history_map (seed_id text, new_id text PRIMARY KEY,"
            " shift interval, shift_ms bigint)"
        )
        statements = []
        for table in RUN_TABLES:
            statement = _copy_statement(conn, table)
            if statement is None:
                continue
            conn.execute(
                sql.SQL(
                    "CREATE TEMP TABLE {seed} AS SELECT * FROM {table} WHERE {run} = ANY(%s)"
                ).format(
                    seed=_seed_table(table),
                    table=sql.Identifier(table.schema, table.name),
                    run=sql.Identifier(table.run_column),
                ),
                (list(seeds),),
            )
            statements.append(statement)
        conn.commit()
        line = timeline(copies)
        shape = {
            "head": max(line.head, 1),
            "tail": max(line.tail, 1),
            "waiting": line.waiting,
            "slots": sum(1 for waiting, _, _ in slots if not waiting),
            "waiting_slots": sum(1 for waiting, _, _ in slots if waiting),
            "history": f"{HISTORY_DAYS} days",
            "recent": f"{WAITING_HOURS} hours",
        }
        done = 0
        progress("copies", done, copies)
        while done < copies:
            size = min(BATCH, copies - done)
            conn.execute(_MAP_BATCH, {"first": done, "last": done + size - 1, **shape})
            for statement in statements:
                conn.execute(statement)
            conn.execute("TRUNCATE history_map")
            conn.commit()
            done += size
            progress("copies", done, copies)


def vacuum_analyze(url: str) -> None:
    """What autovacuum would have done to a database this old: statistics, and the visibility
    map that lets index-only scans skip the table."""
    with connect(url, autocommit=True) as conn:
        for table in RUN_TABLES:
            exists = conn.execute(
                "SELECT to_regclass(%s) AS t", (f"{table.schema}.{table.name}",)
            ).fetchone()
            if exists and exists["t"] is not None:
                conn.execute(
                    sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier(table.schema, table.name))
                )


# -- the reads -------------------------------------------------------------------------------

# The read names of `--json`, in the order shown.
READS = (
    "run list",
    "run list --status",
    "run show",
    "run inbox",
    "queue list",
    "workers list",
    "top",
    "audit --run",
    "audit",
    "doctor",
)
PAGE = 50  # what `sisu run list` shows by default
# Timed calls per read (after WARMUP untimed ones): fewer for the reads that scan everything.
ITERATIONS = {"audit": 3, "doctor": 5, "audit --run": 20}
DEFAULT_ITERATIONS = 40
WARMUP = 2
LISTED_STATUSES = ("succeeded", "failed", "retries_exceeded", "waiting_input", "canceled")
SAMPLED_RUNS = 200


def list_runs(backend: Backend, status: str | None) -> Any:
    """One page of `sisu run list` (the service call the CLI and GET /runs make)."""
    return views.list_runs(backend, status=status, limit=PAGE)


def inbox(backend: Backend) -> Any:
    """`sisu run inbox` (the service call the CLI makes)."""
    return human.inbox(backend)


class Read(NamedTuple):
    """One read: the service call for iteration i; the api-shim's route for it (None: none,
    and a route its OpenAPI document does not list is not timed either) and the request path
    for iteration i."""

    call: Callable[[int], object]
    route: str | None = None
    path: Callable[[int], str] = lambda _: ""


def _reads(backend: Backend, url: str, settings: Settings, run_ids: list[str]) -> dict[str, Read]:
    from sisu.audit import doctor, oracles
    from sisu.service import queues, top, workers

    dead_after = settings.worker_dead_after_seconds
    # doctor's own checks only: not a model server the operator's environment may name.
    doctor_settings = settings.model_copy(update={"compiler": "builtin"})

    def status(i: int) -> str:
        return LISTED_STATUSES[i % len(LISTED_STATUSES)]

    def run_id(i: int) -> str:
        return run_ids[i % len(run_ids)]

    return {
        "run list": Read(
            lambda _: list_runs(backend, None), "/runs", lambda _: f"/runs?limit={PAGE}"
        ),
        "run list --status": Read(
            lambda i: list_runs(backend, status(i)),
            "/runs",
            lambda i: f"/runs?status={status(i)}&limit={PAGE}",
        ),
        "run show": Read(
            lambda i: views.get_run(backend, run_id(i)),
            "/runs/{run_id}",
            lambda i: f"/runs/{run_id(i)}",
        ),
        # GET /inbox comes with the paged inbox; timed wherever the api-shim serves it.
        "run inbox": Read(lambda _: inbox(backend), "/inbox", lambda _: f"/inbox?limit={PAGE}"),
        "queue list": Read(lambda _: queues.depth(backend)),
        "workers list": Read(lambda _: workers.list_workers(backend, dead_after)),
        "top": Read(lambda _: top.frame(backend, dead_after_seconds=dead_after)),
        "audit --run": Read(
            lambda i: oracles.run(url, run_id=run_id(i), dead_after_seconds=dead_after)
        ),
        "audit": Read(lambda _: oracles.run(url, dead_after_seconds=dead_after)),
        "doctor": Read(lambda _: doctor.diagnose(doctor_settings, url)),
    }


def _percentiles(samples: list[float]) -> tuple[float, float]:
    """p50 and p95 (nearest rank), in ms to 0.1."""
    ordered = sorted(samples)

    def rank(pct: float) -> float:
        return round(ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)], 1)

    return rank(50), rank(95)


def _timed(call: Callable[[int], object], iterations: int) -> list[float]:
    for i in range(WARMUP):
        call(i)
    samples = []
    for i in range(iterations):
        started = time.perf_counter()
        call(WARMUP + i)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def _sample_runs(url: str) -> list[str]:
    with connect(url) as conn:
        rows = conn.execute(
            "SELECT id FROM app.runs ORDER BY random() LIMIT %s", (SAMPLED_RUNS,)
        ).fetchall()
    return [r["id"] for r in rows]


@contextmanager
def _shim(url: str, settings: Settings) -> Iterator[Any]:
    """A real `sisu serve` on the scratch database, and an HTTP client for it."""
    import httpx

    from sisu.drills.shim_chaos import Shim, _free_port

    port = _free_port()
    log = settings.logs_dir / "bench" / "history-serve.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    shim = Shim(url, port, log)
    shim.start()
    token = settings.api_token
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=120
        ) as client:
            yield client
    finally:
        shim.stop()


def _routes(client: Any) -> set[str]:
    """The GET routes the api-shim serves, from its OpenAPI document."""
    paths = client.get("/openapi.json").raise_for_status().json()["paths"]
    return {path for path, ops in paths.items() if "get" in ops}


def time_reads(url: str, settings: Settings, progress: Progress) -> dict[str, ReadTiming]:
    run_ids = _sample_runs(url)
    backend = Backend.from_settings(url, settings)
    timings: dict[str, ReadTiming] = {}
    try:
        with _shim(url, settings) as client:

            def get(path: Callable[[int], str], i: int) -> None:
                client.get(path(i)).raise_for_status()

            served = _routes(client)

            for done, (name, read) in enumerate(_reads(backend, url, settings, run_ids).items()):
                progress("reads", done, len(READS))
                iterations = ITERATIONS.get(name, DEFAULT_ITERATIONS)
                p50, p95 = _percentiles(_timed(read.call, iterations))
                http_p50 = http_p95 = None
                if read.route in served:
                    http_p50, http_p95 = _percentiles(_timed(partial(get, read.path), iterations))
                timings[name] = ReadTiming(
                    p50_ms=p50, p95_ms=p95, http_p50_ms=http_p50, http_p95_ms=http_p95
                )
            progress("reads", len(READS), len(READS))
    finally:
        backend.close()
    return timings


def _census(url: str) -> tuple[dict[str, int], int]:
    with connect(url) as conn:
        rows = conn.execute(
            "SELECT status, count(*)::int AS n FROM app.runs GROUP BY status ORDER BY status"
        ).fetchall()
        size = conn.execute("SELECT pg_database_size(current_database()) AS b").fetchone()
    return {r["status"]: r["n"] for r in rows}, int(size["b"]) if size else 0


def run(
    server_url: str,
    settings: Settings,
    *,
    count: int,
    progress: Progress = lambda *_: None,
) -> HistoryResult:
    """Build `count` runs of history in a scratch database (dropped afterwards), then time
    every read on it."""
    with scratch_database(server_url) as url:
        started = time.monotonic()
        seeds = real_runs(url, settings, progress)
        copy_runs(url, seeds, count, progress)
        progress("vacuum analyze", 0, 1)
        vacuum_analyze(url)
        build_seconds = round(time.monotonic() - started, 1)
        statuses, size = _census(url)
        reads = time_reads(url, settings, progress)
    return HistoryResult(
        history=sum(statuses.values()),
        reads=reads,
        build_seconds=build_seconds,
        statuses=statuses,
        database_bytes=size,
        database=redact(server_url),
    )
