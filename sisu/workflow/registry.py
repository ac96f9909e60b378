"""Imports every workflow so that DBOS registers it; the worker imports this, nothing else does."""

from __future__ import annotations

from sisu.workflow.wf import bench, crashdemo, intent

WORKFLOWS = {
    crashdemo.NAME: crashdemo.crash_demo_wf,
    intent.NAME: intent.run_intent_wf,
    bench.NAME: bench.bench_baseline_wf,
    bench.TX_NAME: bench.bench_tx_baseline_wf,
}
