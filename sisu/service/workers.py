"""The fleet of workers, from their heartbeats."""

from __future__ import annotations

from typing import Any

from sisu.db.queries import q
from sisu.service.backend import Backend


def list_workers(backend: Backend, dead_after_seconds: float) -> list[dict[str, Any]]:
    with backend.read() as cur:
        rows = cur.execute(q("workers_list"), {"dead_after_seconds": dead_after_seconds}).fetchall()
    return [
        {
            "executorId": r["executor_id"],
            "host": r["host"],
            "pid": r["pid"],
            "appVersion": r["app_version"],
            "adminPort": r["admin_port"],
            "concurrency": r["concurrency"],
            "startedAt": r["started_at"].isoformat(),
            "heartbeatAt": r["heartbeat_at"].isoformat(),
            "stoppedAt": r["stopped_at"].isoformat() if r["stopped_at"] else None,
            "alive": r["alive"],
            "inFlight": r["in_flight"],
        }
        for r in rows
    ]
