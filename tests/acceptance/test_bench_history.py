"""`sisu bench --history N`, tried as an operator would: it builds N runs of history in a scratch
database — seen there, from outside, while the reads are timed — prints a figure for every read
and drops the database afterwards. Timings are never asserted: they are benchmarks."""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import psycopg

from sisu.db.url import with_database
from tests.support.cli import SISU, run_sisu
from tests.support.db import rows

READS = [
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
]
# The reads the api-shim serves (GET /runs, /runs?status=, /runs/{id}, /inbox); the others have
# no route.
HTTP_READS = {"run list", "run list --status", "run show", "run inbox"}
HISTORY = 2000


def _bench_databases(url: str) -> list[str]:
    found = rows(url, "SELECT datname FROM pg_database WHERE datname LIKE 'sisu_bench_%%'")
    return sorted(r["datname"] for r in found)


def _counts(url: str) -> tuple[int, int] | None:
    """(app.runs, dbos.workflow_status) rows in a scratch database, None while it cannot be
    read (not migrated yet, or already dropped)."""
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            row = conn.execute(
                "SELECT (SELECT count(*) FROM app.runs),"
                " (SELECT count(*) FROM dbos.workflow_status)"
            ).fetchone()
    except psycopg.Error:
        return None
    return (int(row[0]), int(row[1])) if row else None


def _run_watching(
    env: dict[str, str], db_url: str, before: list[str]
) -> tuple[Any, list[tuple[int, int]]]:
    """Run the bench; meanwhile poll its scratch database for how many runs it holds."""
    proc = subprocess.Popen(
        [SISU, "bench", "--history", str(HISTORY), "--json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    seen: list[tuple[int, int]] = []
    deadline = time.monotonic() + 600
    while proc.poll() is None and time.monotonic() < deadline:
        for name in set(_bench_databases(db_url)) - set(before):
            counts = _counts(with_database(db_url, name))
            if counts is not None:
                seen.append(counts)
        time.sleep(0.2)
    out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
    assert proc.returncode == 0, err
    return json.loads(out), seen


def test_history_builds_n_runs_and_times_every_read(sisu_env: dict[str, str], db_url: str) -> None:
    before = _bench_databases(db_url)
    data, seen = _run_watching(sisu_env, db_url, before)

    # N runs existed in the scratch database, in sisu's tables and in DBOS's alike.
    assert (HISTORY, HISTORY) in seen, seen[-5:]
    assert max(seen) == (HISTORY, HISTORY)
    assert _bench_databases(db_url) == before  # and it was dropped afterwards

    assert data["history"] == HISTORY
    # Copies of real runs of every status.
    assert set(data["statuses"]) == {
        "succeeded", "failed", "retries_exceeded", "waiting_input", "canceled"
    }  # fmt: skip
    assert sum(data["statuses"].values()) == HISTORY
    assert list(data["reads"]) == READS
    for name, timing in data["reads"].items():
        assert set(timing) == {"p50Ms", "p95Ms", "httpP50Ms", "httpP95Ms"}, name
        assert 0 <= timing["p50Ms"] <= timing["p95Ms"], name
        if name in HTTP_READS:
            assert 0 <= timing["httpP50Ms"] <= timing["httpP95Ms"], name
        else:
            assert (timing["httpP50Ms"], timing["httpP95Ms"]) == (None, None), name
    assert data["buildSeconds"] > 0 and data["databaseBytes"] > 0


def test_history_refuses_a_tiny_history_and_writes_nothing(
    sisu_env: dict[str, str], db_url: str
) -> None:
    before = _bench_databases(db_url)
    result = run_sisu(["bench", "--history", "10", "--json"], sisu_env)
    assert result.exit_code == 2
    assert _bench_databases(db_url) == before
