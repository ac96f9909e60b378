"""`sisu bench`'s equal-work baseline does the same durable work as a sisu run: on one real
worker, a sisu run and a BenchTxBaselineWF run leave the same rows — steps and attempts,
artifacts, the compiler call, the receipt, the run's end — and the same four DBOS datasource
steps. Otherwise `txRatio` would compare sisu with something cheaper or dearer."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from sisu.drills import bench, cpu
from sisu.service.backend import Backend
from tests.support.db import rows
from tests.support.runs import STEP_IDS, wait_run_done
from tests.support.workers import running_worker


def _evidence(url: str, run_id: str) -> dict[str, Any]:
    def q(query: str) -> list[tuple[Any, ...]]:
        return [tuple(r.values()) for r in rows(url, query, (run_id,))]

    return {
        "run": q("SELECT status, last_step, next_action, error, trace_id, lane, priority,"
                 " queue_name FROM app.runs WHERE id = %s"),
        "intent": q("SELECT goal, inputs, constraints, connectors FROM app.intents WHERE id = %s"),
        "steps": q("SELECT step_id, attempt, phase, error,"
                   " (SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(output) k)"
                   " FROM app.run_steps WHERE run_id = %s ORDER BY finished_at"),
        "artifacts": q("SELECT step_id, idx, kind, uri IS NULL, inline IS NULL, length(sha256)"
                       " FROM app.artifacts WHERE run_id = %s ORDER BY step_id, idx"),
        "calls": q("SELECT step_id, compiler, attempt, request - 'runId', response - 'planId'"
                   " FROM app.opencode_calls WHERE run_id = %s"),
        "receipts": q("SELECT step_id, task_key, seen_count, attempts"
                      " FROM app.mock_receipts WHERE run_id = %s"),
        "dbos_steps": q("SELECT function_id, function_name, error IS NULL"
                        " FROM dbos.operation_outputs WHERE workflow_uuid = %s"
                        " ORDER BY function_id"),
    }  # fmt: skip


def test_the_equal_work_baseline_writes_what_a_sisu_run_writes(
    backend: Backend, db_url: str, tmp_path: Path
) -> None:
    with running_worker(db_url, tmp_path) as worker:
        sisu_run = bench._submit_intent(backend, 1)
        tx_run = bench._submit_tx_baseline(backend, 1)
        wait_run_done(db_url, sisu_run, worker=worker)
        wait_run_done(db_url, tx_run, worker=worker)

    sisu, tx = _evidence(db_url, sisu_run), _evidence(db_url, tx_run)
    assert [s[:3] for s in sisu["steps"]] == [(step, 1, "succeeded") for step in STEP_IDS]
    assert [d[1] for d in sisu["dbos_steps"]] == STEP_IDS
    assert sisu["receipts"] == [("ExecuteST", "task-1", 1, 1)]
    assert tx == sisu

    [name] = rows(
        db_url, "SELECT name FROM dbos.workflow_status WHERE workflow_uuid = %s", (tx_run,)
    )
    assert name == {"name": bench.TX_BASELINE_WORKFLOW}


def _database(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


@pytest.mark.skipif(
    bool(os.environ.get("SISU_TEST_DATABASE_URL")),
    reason="an external test server may run elsewhere (another host, a container)",
)
def test_the_cpu_of_the_embedded_server_is_read_from_proc(db_url: str) -> None:
    found = cpu.find_postmaster(db_url, _database(db_url))
    assert isinstance(found, cpu.Postmaster), found
    assert found.ticks() > 0  # a server that started and served this test has used CPU


def test_a_server_not_on_this_machine_has_no_cpu_figure_and_says_why(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A /proc that holds none of the server's processes: what a server elsewhere looks like.
    monkeypatch.setattr(cpu, "PROC", tmp_path)
    found = cpu.find_postmaster(db_url, _database(db_url))
    assert isinstance(found, str) and found
