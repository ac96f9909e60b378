"""The baselines `sisu bench` measures sisu against, on the same queue and workers:
BenchBaselineWF, four no-op steps (raw DBOS), and BenchTxBaselineWF, the same durable work as a
sisu run written by hand on DBOS (four datasource transactions writing sisu's rows)."""

from __future__ import annotations

from typing import Any

from dbos import DBOS

from sisu import names
from sisu.workflow.steps import bench as tx
from sisu.workflow.steps.noop import noop_step

NAME = names.BENCH_BASELINE_WF
TX_NAME = names.BENCH_TX_BASELINE_WF


@DBOS.workflow(name=NAME)
def bench_baseline_wf(run_id: str) -> str:
    for step in names.STEP_IDS:
        noop_step(step)
    return run_id


@DBOS.workflow(name=TX_NAME)
def bench_tx_baseline_wf(run_id: str, request: dict[str, Any]) -> dict[str, Any]:
    plan = tx.compile_tx(run_id, request)
    tx.apply_patch_tx(run_id, plan)
    decision = tx.decide_tx(run_id, plan)
    return tx.execute_tx(run_id, decision)
