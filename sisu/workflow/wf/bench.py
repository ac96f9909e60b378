"""BenchBaselineWF: four no-op steps, raw DBOS: what `sisu bench` measures sisu against."""

from __future__ import annotations

from dbos import DBOS

from sisu.workflow.steps.noop import noop_step

NAME = "BenchBaselineWF"


@DBOS.workflow(name=NAME)
def bench_baseline_wf(run_id: str) -> str:
    for step in ("CompileST", "ApplyPatchST", "DecideST", "ExecuteST"):
        noop_step(step)
    return run_id
