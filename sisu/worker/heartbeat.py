"""A worker's row in `app.workers`: claimed at start, refreshed while alive, closed at stop."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg

from sisu.db.connection import connect
from sisu.db.queries import q
from sisu.errors import WorkerFailed

log = logging.getLogger("sisu.worker")


@dataclass
class WorkerIdentity:
    executor_id: str
    app_version: str
    queues: list[str]
    concurrency: int | None
    admin_port: int | None = None
    pid: int = field(default_factory=os.getpid)
    host: str = field(default_factory=socket.gethostname)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def claim(url: str, me: WorkerIdentity, dead_after_seconds: float) -> None:
    """Refuse to start when a live worker already holds this executor id: two processes with one
    id would each recover the other's workflows. A killed worker's id is free at once on its own
    host (its pid is gone) and after `dead_after_seconds` of silence elsewhere."""
    with connect(url) as conn:
        row = conn.execute(q("worker_claim_check"), {"executor_id": me.executor_id}).fetchone()
        if row and row["stopped_at"] is None and row["pid"] != me.pid:
            same_host = row["host"] == me.host
            alive = _pid_alive(row["pid"]) if same_host else row["age_seconds"] < dead_after_seconds
            if alive:
                raise WorkerFailed(
                    f"executor id {me.executor_id!r} is held by a live worker "
                    f"(pid {row['pid']} on {row['host']}); give this worker its own --executor-id",
                    details={"executorId": me.executor_id, "pid": row["pid"], "host": row["host"]},
                )
        conn.execute(
            q("worker_start"),
            {
                "executor_id": me.executor_id,
                "app_version": me.app_version,
                "pid": me.pid,
                "host": me.host,
                "admin_port": me.admin_port,
                "queues": me.queues,
                "concurrency": me.concurrency,
            },
        )


class Heartbeat(threading.Thread):
    """Refreshes `heartbeat_at`, and the workflows this worker runs now (`active_workflows`, read
    by the `stalled_runs` oracle), every `interval` seconds until stopped; survives database
    blips."""

    def __init__(
        self,
        url: str,
        me: WorkerIdentity,
        interval: float,
        active: Callable[[], list[str]] = list,
    ) -> None:
        super().__init__(name="sisu-heartbeat", daemon=True)
        self.url, self.me, self.interval, self.active = url, me, interval, active
        self._stop_event = threading.Event()

    def run(self) -> None:
        params: dict[str, object] = {"executor_id": self.me.executor_id, "pid": self.me.pid}
        conn: psycopg.Connection[object] | None = None
        # The first beat goes out at once: the claim happened before DBOS launched, and a peer
        # must not take a worker that just became ready for dead.
        beat_now = True
        while beat_now or not self._stop_event.wait(self.interval):
            beat_now = False
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.url, autocommit=True, connect_timeout=5)
                params["active_workflows"] = self._active_or_last(params)
                conn.execute(q("worker_heartbeat"), params)
            except psycopg.Error as exc:
                log.warning("heartbeat failed (will retry): %s", " ".join(str(exc).split()))
                conn = None
        if conn is not None:
            conn.close()

    def _active_or_last(self, params: dict[str, object]) -> object:
        """The workflows running now; while DBOS shuts down (and can no longer say), the last
        list: the beat itself must go on, or peers take a stopping worker for dead."""
        try:
            return self.active()
        except Exception:
            return params.get("active_workflows", [])

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)
        try:
            with connect(self.url) as conn:
                conn.execute(
                    q("worker_stopped"), {"executor_id": self.me.executor_id, "pid": self.me.pid}
                )
        except Exception as exc:  # stopping must not fail because the database is gone
            log.warning("could not record the worker's stop: %s", exc)
