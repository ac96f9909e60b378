"""A worker's queue settings, stored before its first dequeue.

DBOS 3.x keeps queue settings (concurrency, polling) in the database, one row per queue for the
whole fleet, and a launched worker dequeues with whatever that row says. So the worker writes its
own settings through a DBOS client *before* it launches, says in the log which setting it changed
from what, and records in `app.queue_settings` which worker set them and when."""

from __future__ import annotations

import logging
from typing import Any

from psycopg.types.json import Jsonb

from sisu import engine
from sisu.db.connection import connect
from sisu.db.queries import q

log = logging.getLogger("sisu.worker")

# The settings a worker's flags decide, by the name of the Queue property that reads them back.
SETTINGS = ("worker_concurrency", "global_concurrency", "partition_concurrency")


def settings_for(
    name: str,
    *,
    concurrency: int | None,
    global_concurrency: int | None,
    partition_concurrency: int,
) -> dict[str, Any]:
    """The settings a worker with these flags wants for queue `name`."""
    intent_queue = name in (engine.INTENT_QUEUE, engine.PARTITIONED_QUEUE)
    return {
        "worker_concurrency": concurrency if intent_queue else None,
        "global_concurrency": global_concurrency if intent_queue else None,
        "partition_concurrency": (
            min(partition_concurrency, global_concurrency or partition_concurrency)
            if name == engine.PARTITIONED_QUEUE
            else None
        ),
        "polling_interval_sec": engine.QUEUE_POLL_SECONDS,
    }


def _shown(value: Any) -> str:
    return "unlimited" if value is None else str(value)


def store(url: str, executor_id: str, wanted: dict[str, dict[str, Any]]) -> list[str]:
    """Write each queue's settings before this worker dequeues anything; returns (and logs) one
    line per setting that changed, with its old value."""
    client = engine.client(url)
    changes: list[str] = []
    try:
        for name, settings in wanted.items():
            old = client.retrieve_queue(name)
            # Read now: a Queue's properties read the database when asked, not when retrieved.
            before = {key: getattr(old, key) for key in SETTINGS} if old is not None else None
            client.register_queue(name, on_conflict="always_update", **settings)
            for key in SETTINGS:
                if before is not None and before[key] != settings[key]:
                    changes.append(
                        f"queue {name}: {key} {_shown(settings[key])} "
                        f"(was {_shown(before[key])}), "
                        "for every worker"
                    )
    finally:
        client.destroy()
    with connect(url) as conn:
        for name, settings in wanted.items():
            conn.execute(
                q("queue_settings_set"),
                {"queue_name": name, "settings": Jsonb(settings), "set_by": executor_id},
            )
    for line in changes:
        log.warning("%s; set by this worker's flags", line)
    return changes
