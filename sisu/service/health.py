"""Health: is the database reachable, which workers are alive (from heartbeats)."""

from __future__ import annotations

from typing import Any

from sisu.db.queries import q
from sisu.errors import DatabaseUnavailable
from sisu.service.backend import Backend


def live_workers(backend: Backend, dead_after_seconds: float) -> list[dict[str, Any]]:
    with backend.read() as cur:
        rows = cur.execute(q("live_workers"), {"dead_after_seconds": dead_after_seconds}).fetchall()
    return [
        {
            "executorId": r["executor_id"],
            "appVersion": r["app_version"],
            "host": r["host"],
            "pid": r["pid"],
            "heartbeatAt": r["heartbeat_at"].isoformat(),
        }
        for r in rows
    ]


def health(backend: Backend, dead_after_seconds: float) -> tuple[bool, dict[str, Any]]:
    """(ok, body) for GET /healthz."""
    try:
        workers = live_workers(backend, dead_after_seconds)
    except DatabaseUnavailable as exc:
        return False, {
            "ok": False,
            "db": "down",
            "appVersion": backend.app_version,
            "workers": [],
            "error": exc.message,
        }
    return True, {"ok": True, "db": "up", "appVersion": backend.app_version, "workers": workers}
