"""Walkthrough C, priority: with no worker running, ten batch runs and then one interactive run
are queued; one worker with concurrency 1 drains the queue, and the interactive run — queued
last — starts before (nearly) all of the batch runs. Start times come from
`dbos.workflow_status`, never from logs.

Queue settings live in the database, so the scenario is also played after another worker, with
other settings, has run and stopped: the new worker's `--concurrency 1` must be in force before
its first dequeue, or its first poll takes all eleven runs at once."""

from __future__ import annotations

from pathlib import Path

from tests.support.cli import run_sisu, sisu_env_for
from tests.support.db import rows
from tests.support.polling import poll
from tests.support.runs import fast_backend, start_intent
from tests.support.workers import INTENT_QUEUE, running_worker, wait_worker_ready


def _queue_eleven(db_url: str, tag: str) -> tuple[list[str], str]:
    with fast_backend(db_url) as b:
        batch = [start_intent(b, f"{tag} batch {i}", lane="batch") for i in range(10)]
        interactive = start_intent(b, f"{tag} interactive", lane="interactive", priority=10)
    queued = rows(
        db_url,
        "SELECT workflow_uuid, status, priority, queue_name, started_at_epoch_ms "
        "FROM dbos.workflow_status WHERE workflow_uuid = ANY(%s)",
        ([*batch, interactive],),
    )
    assert len(queued) == 11
    assert {(r["status"], r["queue_name"]) for r in queued} == {("ENQUEUED", INTENT_QUEUE)}
    assert {r["workflow_uuid"]: r["priority"] for r in queued} == {
        **{i: 100 for i in batch},
        interactive: 10,
    }
    assert all(r["started_at_epoch_ms"] is None for r in queued)
    return batch, interactive


def _stored(db_url: str, tmp_path: Path) -> dict[str, object]:
    """What `sisu queue policy --json` says is stored for the intent queue."""
    result = run_sisu(["queue", "policy", "--json"], sisu_env_for(db_url, tmp_path / "home"))
    assert result.exit_code == 0, result.stderr
    stored: dict[str, object] = result.json()["stored"][INTENT_QUEUE]
    return stored


def _drain_with_concurrency_1(db_url: str, tmp_path: Path, ids: list[str], name: str) -> str:
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

    with running_worker(
        db_url, tmp_path, name=name, concurrency=1, fast_retries=True, kill=True
    ) as worker:
        poll("all eleven runs to succeed", all_done, timeout=60, interval=0.1)
        assert worker.alive(), worker.log_tail()
    return worker.executor_id


def _assert_interactive_first(db_url: str, batch: list[str], interactive: str) -> None:
    started = {
        r["workflow_uuid"]: r["started_at_epoch_ms"]
        for r in rows(
            db_url,
            "SELECT workflow_uuid, started_at_epoch_ms FROM dbos.workflow_status "
            "WHERE workflow_uuid = ANY(%s)",
            ([*batch, interactive],),
        )
    }
    assert all(v is not None for v in started.values()), started
    later_batch = [b for b in batch if started[b] > started[interactive]]
    assert len(later_batch) >= 8, {
        "interactive": started[interactive],
        "batch": sorted(started[b] for b in batch),
    }


def test_an_interactive_run_overtakes_queued_batch_runs(db_url: str, tmp_path: Path) -> None:
    batch, interactive = _queue_eleven(db_url, "first")
    _drain_with_concurrency_1(db_url, tmp_path, [*batch, interactive], "prio")
    _assert_interactive_first(db_url, batch, interactive)


def test_a_new_workers_concurrency_is_in_force_before_its_first_dequeue(
    db_url: str, tmp_path: Path
) -> None:
    # Another worker, with no concurrency limit, leaves its queue settings in the database.
    with running_worker(db_url, tmp_path, name="before", fast_retries=True, kill=True) as before:
        wait_worker_ready(db_url, before)
    for attempt in range(3):
        assert _stored(db_url, tmp_path)["workerConcurrency"] is None
        batch, interactive = _queue_eleven(db_url, f"try {attempt}")
        drained_by = _drain_with_concurrency_1(
            db_url, tmp_path, [*batch, interactive], f"prio{attempt}"
        )
        _assert_interactive_first(db_url, batch, interactive)
        stored = _stored(db_url, tmp_path)
        assert (stored["workerConcurrency"], stored["setBy"]) == (1, drained_by)
        # The next try starts from the unlimited settings again.
        with running_worker(
            db_url, tmp_path, name=f"unlimited{attempt}", fast_retries=True, kill=True
        ) as other:
            wait_worker_ready(db_url, other)
