"""The names every side of sisu must spell alike — the worker that registers a workflow, the
shim and CLI that enqueue it by name, the drills, and the SQL in `sql/` — in one module that
imports nothing, so `sisu --help`, the api-shim and the pure workflows can all use it.
The SQL cannot import it: tests/unit/test_names.py reads `sql/` and checks it agrees."""

from __future__ import annotations

# Workflow names as DBOS registers them (`@DBOS.workflow(name=...)`) and as the shim, the CLI
# and the drills enqueue them, without importing `sisu.workflow`.
RUN_INTENT_WF = "RunIntentWF"
CRASH_DEMO_WF = "CrashDemoWF"
BENCH_BASELINE_WF = "BenchBaselineWF"
BENCH_TX_BASELINE_WF = "BenchTxBaselineWF"

# The DBOS message topic a human's answer travels on (service sends, RunIntentWF receives).
INPUT_TOPIC = "human_input"

# The four stable steps of RunIntentWF, in order (app.run_steps.step_id, DBOS function names).
COMPILE_ST = "CompileST"
APPLY_PATCH_ST = "ApplyPatchST"
DECIDE_ST = "DecideST"
EXECUTE_ST = "ExecuteST"
STEP_IDS = (COMPILE_ST, APPLY_PATCH_ST, DECIDE_ST, EXECUTE_ST)

# app.runs.status: every status, the finished ones, the ones `retry` takes, and the ones `gc`
# removes (finished, and not waiting for repair).
RUN_STATUSES = (
    "queued",
    "running",
    "waiting_input",
    "succeeded",
    "failed",
    "canceled",
    "retries_exceeded",
)
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "canceled", "retries_exceeded"})
RETRYABLE_STATUSES = ("retries_exceeded", "failed")
GC_STATUSES = ("succeeded", "failed", "canceled")
# dbos.workflow_status.status of a workflow that will not run again by itself.
DBOS_TERMINAL_STATUSES = frozenset(
    {"SUCCESS", "ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED"}
)

# A step's attempts before its run needs repair, and the first retry's delay (it doubles): the
# defaults of SISU_STEP_MAX_ATTEMPTS / SISU_STEP_BACKOFF_SECONDS and of a run's retry policy.
DEFAULT_STEP_MAX_ATTEMPTS = 3
DEFAULT_STEP_BACKOFF_SECONDS = 1.0
