"""Walkthrough C, priority: with no worker running, ten batch runs and then one interactive run
are queued; one worker with concurrency 1 drains the queue, and the interactive run — queued
last — starts before (nearly) all of the batch runs. Start times come from
`dbos.workflow_status`, never from logs."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import rows
from tests.operator_support import fast_backend, start_intent, worker_running
from tests.runloop_support import INTENT_QUEUE, poll


def test_an_interactive_run_overtakes_queued_batch_runs(db_url: str, tmp_path: Path) -> None:
    with fast_backend(db_url) as b:
        batch = [start_intent(b, f"batch {i}", lane="batch") for i in range(10)]
        interactive = start_intent(b, "interactive", lane="interactive", priority=10)
    ids = [*batch, interactive]

    queued = rows(
        db_url,
        "SELECT workflow_uuid, status, priority, queue_name, started_at_epoch_ms "
        "FROM dbos.workflow_status WHERE workflow_uuid = ANY(%s)",
        (ids,),
    )
    assert len(queued) == 11
    assert {(r["status"], r["queue_name"]) for r in queued} == {("ENQUEUED", INTENT_QUEUE)}
    assert {r["workflow_uuid"]: r["priority"] for r in queued} == {
        **{i: 100 for i in batch},
        interactive: 10,
    }
    assert all(r["started_at_epoch_ms"] is None for r in queued)

    def all_done() -> bool | None:
        statuses = rows(
            db_url,
            "SELECT w.status AS wf, r.status AS run FROM dbos.workflow_status w "
            "JOIN app.runs r ON r.id = w.workflow_uuid WHERE w.workflow_uuid = ANY(%s)",
            (ids,),
        )
        bad = [s for s in statuses if s["run"] in {"failed", "canceled", "retries_exceeded"}]
        assert not bad, bad
        return True if all(s == {"wf": "SUCCESS", "run": "succeeded"} for s in statuses) else None

    with worker_running(db_url, tmp_path, name="prio", concurrency=1) as worker:
        poll("all eleven runs to succeed", all_done, timeout=60, interval=0.1)
        assert worker.alive(), worker.log_tail()

    started = {
        r["workflow_uuid"]: r["started_at_epoch_ms"]
        for r in rows(
            db_url,
            "SELECT workflow_uuid, started_at_epoch_ms FROM dbos.workflow_status "
            "WHERE workflow_uuid = ANY(%s)",
            (ids,),
        )
    }
    assert all(v is not None for v in started.values()), started
    later_batch = [b for b in batch if started[b] > started[interactive]]
    assert len(later_batch) >= 8, {
        "interactive": started[interactive],
        "batch": sorted(started[b] for b in batch),
    }
