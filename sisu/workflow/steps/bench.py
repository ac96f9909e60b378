"""The steps of `sisu bench`'s equal-work baseline (BenchTxBaselineWF): the durable work of a sisu
run written by hand on DBOS, as a user without sisu would write it. Four datasource transactions
through the worker's own datasource (`datasource.run`, the same pool, slots and isolation), each
writing the same rows as sisu's step with the same statements from `sql/queries.sql` — the
compiler call, the workspace's artifacts, the decision, the step's attempt row and the run moved
in one statement — and the receipt delivered through the mock outside system's own pool, looked
up first. The same compiler plans and the same workspace builder writes the files.

What it leaves out is sisu's own layer, which is what `txRatio` prices: the separate intent and
run transactions of the service layer, re-reading the intent inside the steps, and the
bookkeeping around a step (error translation, failed-attempt rows, retries) that costs nothing
while nothing fails."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from psycopg.types.json import Jsonb

from sisu.db.queries import q
from sisu.workflow.steps import datasource, runtime
from sisu.workflow.steps.datasource import Cursor
from sisu.workflow.steps.ports import Delivery, OutsideExecutor
from sisu.workspace import build


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _step(run_id: str, step_id: str, body: Callable[[Cursor], Any], status: str = "running") -> Any:
    """`body`'s writes, the step's attempt row and the run's move, pipelined in one datasource
    transaction that commits with the checkpoint."""
    started_at = datetime.now(UTC)

    def transaction() -> Any:
        conn = datasource.connection()
        with conn.connection.pipeline():
            output = body(conn)
            conn.execute(
                q("step_succeeded"),
                {
                    "run_id": run_id,
                    "step_id": step_id,
                    "output": Jsonb(output),
                    "started_at": started_at,
                    "status": status,
                },
            )
        return output

    return datasource.run(step_id, transaction)


def compile_tx(run_id: str, request: dict[str, Any]) -> dict[str, Any]:
    """The plan from the request the workflow was started with, and the compiler call."""

    def body(conn: Cursor) -> dict[str, Any]:
        compiler = runtime.get().compiler
        asked = time.monotonic()
        plan = compiler.compile(request)
        conn.execute(
            q("insert_opencode_call"),
            {
                "run_id": run_id,
                "step_id": "CompileST",
                "request": Jsonb(request),
                "response": Jsonb(plan),
                "compiler": compiler.name,
                "model": None,
                "input_tokens": None,
                "output_tokens": None,
                "latency_ms": round((time.monotonic() - asked) * 1000),
                "error": None,
            },
        )
        return plan

    return dict(_step(run_id, "CompileST", body))


def apply_patch_tx(run_id: str, plan: dict[str, Any]) -> dict[str, Any]:
    """The workspace built before the transaction; its files and its diff are artifacts."""
    built = build.rebuild(
        runtime.get().workspaces / run_id, plan["patch"]["files"], repo=None, commit=None
    )

    def body(conn: Cursor) -> dict[str, Any]:
        artifacts = [
            {
                "run_id": run_id,
                "step_id": "ApplyPatchST",
                "idx": idx,
                "kind": "file",
                "uri": (built.root / item["path"]).as_uri(),
                "inline": None,
                "sha256": item["sha256"],
            }
            for idx, item in enumerate(built.files)
        ]
        artifacts.append(
            {
                "run_id": run_id,
                "step_id": "ApplyPatchST",
                "idx": len(built.files),
                "kind": "patch",
                "uri": None,
                "inline": Jsonb({"diff": built.diff, "stat": built.stat, "source": None}),
                "sha256": _sha256(built.diff.encode()),
            }
        )
        conn.executemany(q("insert_artifact"), artifacts)
        return {
            "workspace": str(built.root),
            "files": [{"path": f["path"], "sha256": f["sha256"]} for f in built.files],
            "stat": built.stat,
        }

    return dict(_step(run_id, "ApplyPatchST", body))


def decide_tx(run_id: str, plan: dict[str, Any]) -> dict[str, Any]:
    """The decision envelope, as an artifact."""

    def body(conn: Cursor) -> dict[str, Any]:
        decision = {
            "approved": True,
            "planId": plan["planId"],
            "answer": None,
            "tasks": plan["tasks"],
        }
        conn.execute(
            q("insert_next_artifact"),
            {
                "run_id": run_id,
                "step_id": "DecideST",
                "kind": "decision",
                "uri": None,
                "inline": Jsonb(decision),
                "sha256": _sha256(_canonical(decision)),
            },
        )
        return decision

    return dict(_step(run_id, "DecideST", body))


def execute_tx(run_id: str, decision: dict[str, Any]) -> dict[str, Any]:
    """Each task delivered to the mock outside system under its idempotency key, looked up
    first; the run ends succeeded."""

    def body(_: Cursor) -> dict[str, Any]:
        executor = runtime.get().executor
        assert not isinstance(executor, OutsideExecutor)
        receipts = []
        for task in decision["tasks"]:
            key = f"{run_id}:ExecuteST:{task['taskKey']}"
            delivered = executor.lookup(key) is None
            if delivered:
                executor.deliver(
                    Delivery(
                        receipt_key=key,
                        run_id=run_id,
                        step_id="ExecuteST",
                        task_key=task["taskKey"],
                        payload_hash=_sha256(_canonical(task["payload"])),
                    )
                )
            receipts.append({"taskKey": task["taskKey"], "receiptKey": key, "new": delivered})
        return {"receipts": receipts}

    return dict(_step(run_id, "ExecuteST", body, status="succeeded"))
