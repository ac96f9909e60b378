"""Automatic failover: a live worker recovers the pending workflows of a dead worker of the same
app version, through DBOS's own recovery (which re-enqueues them; the queue's atomic dequeue
admits exactly one runner). An advisory lock elects one recoverer per dead executor; every
failover is recorded in `app.failovers`."""

from __future__ import annotations

import logging
import threading
from typing import Any

import psycopg
from psycopg.rows import dict_row

from sisu import compat, metrics
from sisu.db.queries import q

log = logging.getLogger("sisu.worker")


class Failover(threading.Thread):
    def __init__(
        self, url: str, executor_id: str, app_version: str, timeout: float, interval: float
    ) -> None:
        super().__init__(name="sisu-failover", daemon=True)
        self.url, self.me, self.app_version = url, executor_id, app_version
        self.timeout, self.interval = timeout, interval
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            try:
                self.sweep()
            except Exception as exc:  # a failed sweep is retried on the next tick
                metrics.failover_sweep("error")
                log.warning("failover sweep failed: %s", " ".join(str(exc).split()))
            else:
                metrics.failover_sweep("ok")

    def sweep(self) -> int:
        """Recover every dead executor this worker wins the election for; returns how many
        workflows it re-enqueued."""
        recovered = 0
        with psycopg.connect(self.url, row_factory=dict_row, connect_timeout=5) as conn:
            dead = conn.execute(
                q("failover_candidates"),
                {"app_version": self.app_version, "me": self.me, "timeout_seconds": self.timeout},
            ).fetchall()
            for row in dead:
                executor_id = row["executor_id"]
                with conn.transaction():
                    won: Any = conn.execute(
                        q("failover_lock"), {"executor_id": executor_id}
                    ).fetchone()
                    if not won or not won["won"]:
                        continue
                    ids = compat.recover_executor(executor_id)
                    if not ids:
                        continue
                    conn.execute(
                        q("record_failover"),
                        {
                            "dead": executor_id,
                            "me": self.me,
                            "app_version": self.app_version,
                            "n": len(ids),
                            "ids": ids,
                        },
                    )
                    recovered += len(ids)
                    log.info(
                        "failover: recovered %d workflow(s) of dead executor %s",
                        len(ids),
                        executor_id,
                    )
        return recovered

    def request_stop(self) -> None:
        self._stop_event.set()

    def stop(self) -> None:
        self.request_stop()
        self.join(timeout=5)
