"""The operator's view of the queues, from `dbos.workflow_status` joined with `app.runs`."""

from __future__ import annotations

from typing import Any

from sisu.db.queries import q
from sisu.service.backend import Backend


def depth(backend: Backend) -> list[dict[str, Any]]:
    with backend.read() as cur:
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
