"""The operator's view of the queues, from `dbos.workflow_status` joined with `app.runs`."""

from __future__ import annotations

from typing import Any

from sisu.db.queries import q
from sisu.service.backend import Backend, Cursor


def depth(backend: Backend) -> list[dict[str, Any]]:
    with backend.read() as cur:
        return depth_rows(cur)


def depth_rows(cur: Cursor) -> list[dict[str, Any]]:
    """Queue depth on a cursor the caller holds (`sisu top` reads it inside its snapshot)."""
    rows = cur.execute(q("queue_depth")).fetchall()
    return [
        {
            "queue": r["queue_name"],
            "lane": r["lane"],
            "partition": r["partition_key"],
            "status": r["status"],
            "count": r["n"],
            "oldestAgeSeconds": round(float(r["oldest_age_seconds"]), 3),
        }
        for r in rows
    ]


def stored(backend: Backend) -> dict[str, dict[str, Any]]:
    """The settings in force for the whole fleet on sisu's queues (DBOS keeps one row per
    queue), with the worker that last set them and when."""
    from sisu import engine

    names = [engine.INTENT_QUEUE, engine.PARTITIONED_QUEUE]
    with backend.read() as cur:
        rows = cur.execute(q("queue_settings_stored"), {"names": names}).fetchall()
    return {
        r["queue_name"]: {
            "workerConcurrency": r["worker_concurrency"],
            "globalConcurrency": r["global_concurrency"],
            "partitionConcurrency": r["partition_concurrency"],
            "pollingIntervalSec": r["polling_interval_sec"],
            "setBy": r["set_by"],
            "setAt": r["set_at"].isoformat() if r["set_at"] else None,
        }
        for r in rows
    }
