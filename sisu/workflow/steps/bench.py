"""The steps of `sisu bench`'s equal-work baseline (BenchTxBaselineWF): the durable work of a sisu
run written by hand on DBOS, as a user without sisu would write it. Four datasource transactions
through the worker's own datasource (`datasource.run`, the same pool, slots and isolation), each
writing the same rows as sisu's step through the same writers (`records.py`) — the compiler
call, the workspace's artifacts, the decision, the step's attempt row and the run moved in one
statement — and the receipt delivered through the mock outside system's own pool, looked up
first. The same compiler plans and the same workspace builder writes the files.

What it leaves out is sisu's own layer, which is what `txRatio` prices: the separate intent and
run transactions of the service layer, re-reading the intent inside the steps, and the
bookkeeping around a step (error translation, failed-attempt rows, retries) that costs nothing
while nothing fails."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sisu.workflow.steps import datasource, records, runtime
from sisu.workflow.steps.datasource import Cursor
from sisu.workflow.steps.ports import OutsideExecutor
from sisu.workspace import build


def _step(run_id: str, step_id: str, body: Callable[[Cursor], Any], status: str = "running") -> Any:
    """`body`'s writes, the step's attempt row and the run's move, pipelined in one datasource
    transaction that commits with the checkpoint."""
    started_at = datetime.now(UTC)

    def transaction() -> Any:
        conn = datasource.connection()
        with conn.connection.pipeline():
            output = body(conn)
            records.step_succeeded(conn, run_id, step_id, output, started_at, status)
        return output

    return datasource.run(step_id, transaction)


def compile_tx(run_id: str, request: dict[str, Any]) -> dict[str, Any]:
    """The plan from the request the workflow was started with, and the compiler call."""

    def body(conn: Cursor) -> dict[str, Any]:
        return records.compile_plan(conn, run_id, request, runtime.get().compiler)

    return dict(_step(run_id, "CompileST", body))


def apply_patch_tx(run_id: str, plan: dict[str, Any]) -> dict[str, Any]:
    """The workspace built before the transaction; its files and its diff are artifacts."""
    built = build.rebuild(
        runtime.get().workspaces / run_id, plan["patch"]["files"], repo=None, commit=None
    )

    def body(conn: Cursor) -> dict[str, Any]:
        return records.workspace_artifacts(conn, run_id, built, None)

    return dict(_step(run_id, "ApplyPatchST", body))


def decide_tx(run_id: str, plan: dict[str, Any]) -> dict[str, Any]:
    """The decision envelope, as an artifact."""

    def body(conn: Cursor) -> dict[str, Any]:
        return records.decision(conn, run_id, plan, None)

    return dict(_step(run_id, "DecideST", body))


def execute_tx(run_id: str, decision: dict[str, Any]) -> dict[str, Any]:
    """Each task delivered to the mock outside system under its idempotency key, looked up
    first; the run ends succeeded."""

    def body(_: Cursor) -> dict[str, Any]:
        executor = runtime.get().executor
        assert not isinstance(executor, OutsideExecutor)
        return records.deliver_tasks(executor, run_id, decision["tasks"])

    return dict(_step(run_id, "ExecuteST", body, status="succeeded"))
