"""`sisu worker --executor http` against a real receiver on 127.0.0.1: each task arrives once
under its own Idempotency-Key; a worker killed -9 while the receiver holds a delivery is
restarted, and the run succeeds with every POST carrying its key, the held one sent again under
the same key, and no key recorded twice."""

from __future__ import annotations

import uuid
from pathlib import Path

from sisu.drills.processes import WorkerProcess
from tests.support.cli import FAST_BACKOFF, run_sisu, sisu_env_for
from tests.support.db import rows
from tests.support.fake_webhook import FakeWebhook
from tests.support.runs import fast_backend, start_intent, wait_run_done
from tests.support.workers import intent_worker, wait_worker_ready

TOKEN = "hook-secret-token-7"


def http_worker(url: str, tmp_path: Path, hook: FakeWebhook, executor_id: str) -> WorkerProcess:
    env = {
        "SISU_WEBHOOK_URL": hook.url,
        "SISU_WEBHOOK_TOKEN": TOKEN,
        "SISU_STEP_BACKOFF_SECONDS": FAST_BACKOFF,
    }
    return intent_worker(
        url, tmp_path, "http", "--executor", "http", env=env, executor_id=executor_id
    ).start()


def deliveries(url: str, run_id: str) -> list[dict[str, object]]:
    return rows(
        url,
        "SELECT idempotency_key, status_code, attempts FROM app.deliveries WHERE run_id = %s "
        "ORDER BY idempotency_key",
        (run_id,),
    )


def test_three_tasks_reach_the_receiver_under_three_keys(db_url: str, tmp_path: Path) -> None:
    with FakeWebhook() as hook:
        worker = http_worker(db_url, tmp_path, hook, f"http-{uuid.uuid4().hex[:8]}")
        try:
            wait_worker_ready(db_url, worker)
            with fast_backend(db_url) as b:
                run_id = start_intent(b, "deliver three", inputs={"tasks": 3})
            wait_run_done(db_url, run_id, worker=worker)
        finally:
            worker.stop()
        keys = [f"{run_id}:ExecuteST:task-{i}" for i in (1, 2, 3)]
        assert sorted(r.idempotency_key or "" for r in hook.requests) == keys
        assert all(r.authorization == f"Bearer {TOKEN}" for r in hook.requests)
        assert [r.body["taskKey"] for r in hook.requests] == ["task-1", "task-2", "task-3"]
    assert deliveries(db_url, run_id) == [
        {"idempotency_key": k, "status_code": 200, "attempts": 1} for k in keys
    ]
    [step] = rows(
        db_url,
        "SELECT output FROM app.run_steps WHERE run_id = %s AND step_id = 'ExecuteST'",
        (run_id,),
    )
    assert step["output"]["executor"] == "http"
    assert [d["new"] for d in step["output"]["deliveries"]] == [True, True, True]
    audit = run_sisu(["audit", "--json", "--run", run_id], sisu_env_for(db_url, tmp_path / "cli"))
    assert audit.exit_code == 0, audit.stdout


def test_a_worker_killed_during_a_delivery_sends_it_again_under_the_same_key(
    db_url: str, tmp_path: Path
) -> None:
    with FakeWebhook() as hook:
        hook.answer(200, times=1)  # task-1 is answered at once
        first = http_worker(db_url, tmp_path, hook, f"http-kill-{uuid.uuid4().hex[:8]}")
        wait_worker_ready(db_url, first)
        held = hook.hang(times=1)  # task-2 is held until the worker is dead
        with fast_backend(db_url) as b:
            run_id = start_intent(b, "deliver while dying", inputs={"tasks": 3})
        assert held.arrived.wait(60), "the delivery never arrived"
        first.kill()
        held.release.set()
        second = first.restart()
        try:
            wait_run_done(db_url, run_id, worker=second, timeout=90)
        finally:
            second.stop()
        keys = [f"{run_id}:ExecuteST:task-{i}" for i in (1, 2, 3)]
        assert all(r.idempotency_key in keys for r in hook.requests)
        # task-1 was recorded before the kill and is not sent again; task-2 was in flight.
        assert {k: hook.count(k) for k in keys} == {keys[0]: 1, keys[1]: 2, keys[2]: 1}
    recorded = deliveries(db_url, run_id)
    assert [r["idempotency_key"] for r in recorded] == keys
    assert [r["attempts"] for r in recorded] == [1, 2, 1]
    assert all(r["status_code"] == 200 for r in recorded)
    audit = run_sisu(["audit", "--json", "--run", run_id], sisu_env_for(db_url, tmp_path / "cli"))
    assert audit.exit_code == 0, audit.stdout
