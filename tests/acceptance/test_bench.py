"""`sisu bench`, tried as an operator would: a small run prints every figure, derives the ratio
from its own throughputs, and leaves no scratch database behind. Timings are never asserted:
the figures are benchmarks, not pass/fail thresholds."""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.support.cli import pty_run, run_sisu
from tests.support.db import rows

LATENCIES = ("enqueueToStartMs", "runMs", "baselineEnqueueToStartMs", "baselineRunMs")


def _bench_databases(url: str) -> list[dict[str, Any]]:
    return rows(url, "SELECT datname FROM pg_database WHERE datname LIKE 'sisu_bench_%%'")


def _latency_ok(latency: dict[str, Any]) -> bool:
    return latency["p50"] is not None and 0 <= latency["p50"] <= latency["p99"]


@pytest.fixture(scope="module")
def bench_json(module_sisu_env: dict[str, str], module_db_url: str) -> dict[str, Any]:
    """One small bench, read by several tests."""
    before = _bench_databases(module_db_url)
    result = run_sisu(["bench", "--intents", "6", "--workers", "1", "--json"], module_sisu_env, 300)
    assert result.exit_code == 0, result.stderr
    assert _bench_databases(module_db_url) == before  # the scratch database was dropped
    data: dict[str, Any] = result.json()
    return data


def test_bench_prints_every_figure(bench_json: dict[str, Any]) -> None:
    data = bench_json
    assert (data["intents"], data["workers"], data["pacedRuns"]) == (6, 1, 6)
    assert data["intentsPerSec"] > 0 and data["baselinePerSec"] > 0
    assert data["ratio"] == round(data["intentsPerSec"] / data["baselinePerSec"], 3)
    assert data["txBaselinePerSec"] > 0
    assert data["txRatio"] == round(data["intentsPerSec"] / data["txBaselinePerSec"], 3)
    assert data["pacedPerSec"] == max(1.0, round(data["intentsPerSec"] / 2, 1))
    assert (data["failedRuns"], data["baselineFailedRuns"], data["txBaselineFailedRuns"]) == (
        0,
        0,
        0,
    )
    for name in LATENCIES:
        assert _latency_ok(data[name]), name
        assert _latency_ok(data["burst"][name]), f"burst.{name}"
    assert data["seconds"] > 0


def test_bench_measures_cpu_per_run(bench_json: dict[str, Any]) -> None:
    """Every kind's CPU per run: the workers' always; PostgreSQL's with the total, or null
    with the reason (a server not on this machine)."""
    cpu = bench_json["cpuMsPerRun"]
    for kind in ("sisu", "baseline", "txBaseline"):
        figures = cpu[kind]
        assert figures["workers"] > 0, kind
        if figures["postgres"] is None:
            assert figures["total"] is None and cpu["postgresNote"], kind
        else:
            assert figures["total"] == round(figures["workers"] + figures["postgres"], 2), kind


@pytest.mark.skipif(
    bool(os.environ.get("SISU_TEST_DATABASE_URL")),
    reason="an external test server may run elsewhere (another host, a container)",
)
def test_bench_measures_the_embedded_servers_cpu(bench_json: dict[str, Any]) -> None:
    """The embedded server runs on this machine: its CPU time is read from /proc."""
    cpu = bench_json["cpuMsPerRun"]
    assert cpu["postgresNote"] is None
    for kind in ("sisu", "baseline", "txBaseline"):
        assert cpu[kind]["postgres"] > 0, kind


def test_bench_on_a_terminal_exits_0(sisu_env: dict[str, str], db_url: str) -> None:
    before = _bench_databases(db_url)
    code, shown = pty_run(["bench", "--intents", "3", "--workers", "1"], sisu_env, 300)
    assert code == 0, shown
    assert _bench_databases(db_url) == before


def test_bench_refuses_a_bad_count_and_writes_nothing(
    sisu_env: dict[str, str], db_url: str
) -> None:
    before = _bench_databases(db_url)
    result = run_sisu(["bench", "--intents", "0", "--json"], sisu_env)
    assert result.exit_code == 2
    assert _bench_databases(db_url) == before
