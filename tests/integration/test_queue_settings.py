"""A worker's queue settings are stored before it launches, for the whole fleet: the change of
each setting is reported with its old value, and who set them is recorded."""

from __future__ import annotations

from sisu import engine
from sisu.worker import queues
from tests.support.db import rows


def _settings(concurrency: int | None) -> dict[str, dict[str, object]]:
    return {
        engine.INTENT_QUEUE: queues.settings_for(
            engine.INTENT_QUEUE,
            concurrency=concurrency,
            global_concurrency=None,
            partition_concurrency=4,
        )
    }


def test_storing_settings_reports_each_change_with_its_old_value(db_url: str) -> None:
    assert queues.store(db_url, "w-1", _settings(None)) == []
    assert queues.store(db_url, "w-2", _settings(3)) == [
        f"queue {engine.INTENT_QUEUE}: worker_concurrency 3 (was unlimited), for every worker"
    ]
    assert queues.store(db_url, "w-3", _settings(3)) == []
    assert rows(
        db_url,
        "SELECT q.worker_concurrency, s.set_by FROM dbos.queues q "
        "JOIN app.queue_settings s ON s.queue_name = q.name WHERE q.name = %s",
        (engine.INTENT_QUEUE,),
    ) == [{"worker_concurrency": 3, "set_by": "w-3"}]
