"""The rows a run's steps write inside their transactions, one function each: RunIntentWF's steps
(`intent.py`) and the bench baseline's hand-written DBOS steps (`bench.py`) both call them, so
the baseline writes exactly sisu's rows with sisu's statements and prices only sisu's own layer
around them."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from sisu.db.queries import q
from sisu.workflow.steps.datasource import Cursor
from sisu.workflow.steps.ports import Compiler, Delivery, Executor
from sisu.workspace.build import Built


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical(value: Any) -> bytes:
    """The bytes a JSON value is hashed as: sorted keys, no spaces."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def compile_plan(
    conn: Cursor, run_id: str, request: dict[str, Any], compiler: Compiler
) -> dict[str, Any]:
    """CompileST's plan from a built-in compiler, and the call recorded with its latency."""
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


def workspace_artifacts(
    conn: Cursor, run_id: str, built: Built, source: dict[str, Any] | None
) -> dict[str, Any]:
    """ApplyPatchST's rows: each file of the built workspace, then the diff against `source`'s
    commit (`sisu run patch`), as artifacts; and the step's output."""
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
            "inline": Jsonb({"diff": built.diff, "stat": built.stat, "source": source}),
            "sha256": sha256(built.diff.encode()),
        }
    )
    # psycopg pipelines executemany: one round trip for all the files.
    conn.executemany(q("insert_artifact"), artifacts)
    return {
        "workspace": str(built.root),
        "files": [{"path": f["path"], "sha256": f["sha256"]} for f in built.files],
        "stat": built.stat,
    }


def decision(conn: Cursor, run_id: str, plan: dict[str, Any], answer: Any) -> dict[str, Any]:
    """DecideST's decision envelope (which tasks execute, and the human's answer if the plan
    asked for one), recorded as an artifact."""
    envelope = {
        "approved": True,
        "planId": plan["planId"],
        "answer": answer,
        "tasks": plan["tasks"],
    }
    conn.execute(
        q("insert_next_artifact"),
        {
            "run_id": run_id,
            "step_id": "DecideST",
            "kind": "decision",
            "uri": None,
            "inline": Jsonb(envelope),
            "sha256": sha256(canonical(envelope)),
        },
    )
    return envelope


def deliver_tasks(
    executor: Executor,
    run_id: str,
    tasks: list[dict[str, Any]],
    after_delivery: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    """ExecuteST's effect: each task delivered to the outside system under its idempotency key
    (runId, stepId, taskKey), looked up first, so a step executed again after a crash never
    delivers twice. `after_delivery` runs after each new delivery (a drill's kill point)."""
    receipts = []
    for task in tasks:
        key = f"{run_id}:ExecuteST:{task['taskKey']}"
        delivered = executor.lookup(key) is None
        if delivered:
            executor.deliver(
                Delivery(
                    receipt_key=key,
                    run_id=run_id,
                    step_id="ExecuteST",
                    task_key=task["taskKey"],
                    payload_hash=sha256(canonical(task["payload"])),
                )
            )
            after_delivery()
        receipts.append({"taskKey": task["taskKey"], "receiptKey": key, "new": delivered})
    return {"receipts": receipts}


def step_succeeded(
    conn: Cursor, run_id: str, step_id: str, output: Any, started_at: datetime, status: str
) -> None:
    """The step's succeeded attempt row and the run moved to `status`, in one statement (a
    canceled run stays canceled)."""
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
