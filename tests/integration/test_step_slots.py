"""A worker runs at most `--step-slots` steps at once, whatever it has taken from the queue:
the rest wait their turn (no pool timeout can fail them), and a run waiting for a human holds
no slot. Evidence: when each run entered ExecuteST (the drill marker the worker writes inside
the step) and when that step committed (`app.run_steps.finished_at`)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sisu.drills.processes import WorkerProcess
from sisu.workflow.steps.drill_hooks import ENV_MARKER_DIR
from tests.support.db import rows
from tests.support.runs import ASK_GOAL, run_status, submit, wait_all_done, wait_run_status
from tests.support.workers import new_executor_id, wait_worker_ready

SLOTS = 2
RUNS = 6


def _execute_intervals(url: str, markers: Path, ids: list[str]) -> list[tuple[float, float]]:
    entered: dict[str, float] = {}
    for marker in markers.iterdir():
        run_id, ns, point = marker.name.split(".")
        if point == "execute":
            entered[run_id] = min(int(ns) / 1e9, entered.get(run_id, float("inf")))
    finished = {
        r["run_id"]: r["finished_at"]
        for r in rows(
            url,
            "SELECT run_id, finished_at FROM app.run_steps "
            "WHERE run_id = ANY(%s) AND step_id = 'ExecuteST' AND phase = 'succeeded'",
            (ids,),
        )
    }
    assert set(entered) == set(ids) == set(finished)
    return [(entered[i], datetime.timestamp(finished[i])) for i in ids]


def _most_at_once(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    most = now = 0
    for _, delta in events:
        now += delta
        most = max(most, now)
    return most


def _worker(db_url: str, tmp_path: Path, slots: int, markers: Path | None = None) -> WorkerProcess:
    executor_id = new_executor_id("slots")
    env = {"SISU_HOME": str(tmp_path / "home")}
    if markers is not None:
        env[ENV_MARKER_DIR] = str(markers)
    return WorkerProcess(
        url=db_url,
        executor_id=executor_id,
        app_version="v1",
        log_path=tmp_path / "logs" / f"{executor_id}.log",
        admin_port=0,
        extra_env=env,
        extra_args=("--step-slots", str(slots)),
        clean_env=True,
    ).start()


def test_a_worker_runs_at_most_its_step_slots_at_once(db_url: str, tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    worker = _worker(db_url, tmp_path, SLOTS, markers)
    try:
        wait_worker_ready(db_url, worker)
        # Each ExecuteST holds its slot for a second; the worker takes all six runs at once
        # (no --concurrency), so only the slots can keep them apart.
        ids = submit(db_url, RUNS, {"sleepMs": 1000})
        wait_all_done(db_url, ids, timeout=90, watch=(worker,))
    finally:
        worker.stop()
    assert _most_at_once(_execute_intervals(db_url, markers, ids)) == SLOTS


def test_a_run_waiting_for_a_human_holds_no_slot(db_url: str, tmp_path: Path) -> None:
    worker = _worker(db_url, tmp_path, 1)
    try:
        wait_worker_ready(db_url, worker)
        [asking] = submit(db_url, 1, {}, goal=ASK_GOAL)
        wait_run_status(db_url, asking, "waiting_input", worker=worker, timeout=60)
        ids = submit(db_url, 3, {})
        wait_all_done(db_url, ids, timeout=60, watch=(worker,))
        assert run_status(db_url, asking) == "waiting_input"
    finally:
        worker.stop()
