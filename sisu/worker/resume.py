"""Self-healing after a database outage: a worker resumes its own stranded workflows.

When the database dies under a workflow, DBOS's own bookkeeping (recording a step, a durable
sleep, the outcome) can fail outside any sisu step; the workflow's thread then ends while its
status stays PENDING on this executor, and nothing would run it again until the worker restarts.
This thread compares the workflows the database says this executor runs with those a thread of
this process really runs, and re-enqueues the difference through DBOS's recovery step, guarded by
the executor id and the PENDING status, so a workflow is never run twice at once."""

from __future__ import annotations

import logging
import threading

import psycopg
from psycopg.rows import dict_row

from sisu import compat
from sisu.db.queries import q

log = logging.getLogger("sisu.worker")


class Resumer(threading.Thread):
    def __init__(self, url: str, executor_id: str, app_version: str, interval: float) -> None:
        super().__init__(name="sisu-resume", daemon=True)
        self.url, self.me, self.app_version, self.interval = url, executor_id, app_version, interval
        self._stop_event = threading.Event()
        # Workflows seen stranded on the previous sweep. A workflow is resumed only when two
        # sweeps in a row find it PENDING here with no thread: a workflow the queue has just
        # handed to this worker is PENDING a moment before its thread starts.
        self._suspects: set[str] = set()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            try:
                self.sweep()
            except Exception as exc:  # the database may still be down: try again next tick
                log.warning("resume sweep failed: %s", " ".join(str(exc).split()))

    def stranded(self) -> set[str]:
        """PENDING workflows of this executor that no thread of this process runs."""
        # The active set is read before the database: a workflow whose thread ends between
        # the two reads counts as running, never the other way round.
        running = compat.active_workflow_ids()
        with psycopg.connect(self.url, row_factory=dict_row, connect_timeout=5) as conn:
            rows = conn.execute(
                q("executor_pending_workflows"),
                {"executor_id": self.me, "app_version": self.app_version},
            ).fetchall()
        return {r["workflow_id"] for r in rows} - running

    def sweep(self) -> list[str]:
        """Resume the workflows stranded on this sweep and the previous one; returns their ids."""
        stranded = self.stranded()
        due = sorted(stranded & self._suspects)
        self._suspects = stranded - set(due)
        if not due:
            return []
        resumed = compat.recover_workflows(self.me, due)
        if resumed:
            log.warning(
                "resumed %d workflow(s) whose thread ended while the database was failing: %s",
                len(resumed),
                ", ".join(resumed),
            )
        return resumed

    def request_stop(self) -> None:
        self._stop_event.set()

    def stop(self) -> None:
        self.request_stop()
        self.join(timeout=5)
