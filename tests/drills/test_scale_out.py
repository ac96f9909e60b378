"""Scale-out on one database (issue 8), with real `sisu worker` processes: automatic failover of
a SIGKILLed worker's runs, a declared-dead worker coming back, graceful shutdown with and
without a grace period, and a version rollout with `sisu doctor` and `sisu run resume`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

from sisu.drills.processes import WorkerProcess
from tests.support.cli import run_sisu
from tests.support.db import rows, scalar
from tests.support.polling import poll
from tests.support.runs import (
    STEP_IDS,
    in_execute,
    pending_by_executor,
    receipts,
    recorded,
    statuses,
    submit,
    succeeded_attempts,
    wait_all_done,
    workflows,
)
from tests.support.workers import (
    fleet_worker,
    new_executor_id,
    wait_failover_sweeps,
    wait_heartbeat_after_ready,
    wait_worker_ready,
)

FAILOVER_TIMEOUT = 3
# The bound: the survivor finishes everything within the failover timeout + 15 s.
FAILOVER_BOUND = FAILOVER_TIMEOUT + 15
SLOW = {"sleepMs": 4000}


def _one_attempt_per_step(url: str, ids: list[str]) -> None:
    for step in STEP_IDS:
        assert succeeded_attempts(url, ids, step) == dict.fromkeys(ids, 1), step


def _no_duplicate_effects(url: str, ids: list[str]) -> None:
    found = receipts(url, ids)
    assert sorted(r["run_id"] for r in found) == sorted(ids)  # one task each, delivered once
    assert [r for r in found if r["seen_count"] != 1] == []


# --- failover: kill -9 one of two workers -------------------------------------------------------


@dataclass
class FailoverDrill:
    url: str
    env: dict[str, str]
    tmp: Path
    ids: list[str]
    victim: WorkerProcess
    survivor: WorkerProcess
    held: list[str]
    executing_at_kill: set[str]
    took: float
    extra: list[WorkerProcess] = field(default_factory=list)


@pytest.fixture(scope="module")
def failover(
    module_db_url: str,
    module_sisu_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[FailoverDrill]:
    """Two workers share the database; six slow runs; the worker holding the most of them is
    SIGKILLed in the middle of their ExecuteST and never restarted (until the comeback test)."""
    url, tmp = module_db_url, tmp_path_factory.mktemp("failover")
    args = ("--failover-timeout", str(FAILOVER_TIMEOUT))
    pair = [fleet_worker(url, tmp, new_executor_id(name), args=args) for name in ("fo-a", "fo-b")]
    drill: FailoverDrill | None = None
    try:
        for w in pair:
            w.start()
        for w in pair:
            wait_worker_ready(url, w)
        ids = submit(url, 6, SLOW)

        def all_dequeued() -> dict[str, list[str]] | None:
            held = pending_by_executor(url, ids)
            return held if sum(len(v) for v in held.values()) == len(ids) else None

        held_by = poll("all six runs to be taken", all_dequeued, timeout=20)
        victim_id = max(held_by, key=lambda e: len(held_by[e]))
        by_id = {w.executor_id: w for w in pair}
        victim = by_id[victim_id]
        survivor = next(w for w in pair if w is not victim)
        held = held_by[victim_id]
        executing = poll(
            "the victim's runs to be inside ExecuteST",
            lambda: s if (s := in_execute(url, held)) == set(held) else None,
            timeout=10,
            interval=0.02,
        )
        victim.kill()
        assert not victim.alive()
        took = wait_all_done(url, ids, timeout=FAILOVER_BOUND, watch=(survivor,))
        drill = FailoverDrill(
            url, module_sisu_env, tmp, ids, victim, survivor, held, executing, took
        )
        yield drill
    finally:
        for w in [*pair, *(drill.extra if drill else [])]:
            w.kill()


def test_the_kill_landed_while_the_victim_held_runs_inside_execute(failover: FailoverDrill) -> None:
    assert failover.held, "the SIGKILLed worker held no run"
    assert failover.executing_at_kill == set(failover.held)


def test_the_survivor_finishes_all_six_within_the_failover_bound(failover: FailoverDrill) -> None:
    assert failover.took <= FAILOVER_BOUND
    assert statuses(failover.url, failover.ids) == dict.fromkeys(failover.ids, "succeeded")
    wf = workflows(failover.url, failover.ids)
    assert {w["status"] for w in wf.values()} == {"SUCCESS"}
    # Every run, the dead worker's included, finished on the survivor.
    assert {i: w["executor_id"] for i, w in wf.items()} == dict.fromkeys(
        failover.ids, failover.survivor.executor_id
    )
    assert not failover.victim.alive()


def test_the_failover_is_recorded_for_the_dead_executor(failover: FailoverDrill) -> None:
    found = rows(
        failover.url,
        "SELECT dead_executor_id, recovered_by, app_version, workflows, workflow_ids "
        "FROM app.failovers ORDER BY id",
    )
    assert len(found) == 1, found
    row = found[0]
    assert row["dead_executor_id"] == failover.victim.executor_id
    assert row["recovered_by"] == failover.survivor.executor_id
    assert row["app_version"] == "v1"
    assert row["workflows"] == len(failover.held)
    assert sorted(row["workflow_ids"]) == sorted(failover.held)


def test_no_effect_happened_twice_and_each_step_succeeded_once(failover: FailoverDrill) -> None:
    _no_duplicate_effects(failover.url, failover.ids)
    _one_attempt_per_step(failover.url, failover.ids)


def test_audit_is_clean_after_the_failover(failover: FailoverDrill) -> None:
    # The dead worker's app.workers row stays (it never said goodbye); the audit only flags
    # runs that are still queued or pending, and there are none left.
    result = run_sisu(["audit", "--json"], failover.env)
    assert result.exit_code == 0, result.stdout + result.stderr
    report = result.json()
    assert report["ok"] is True
    assert {c["name"]: c["count"] for c in report["checks"]}["duplicate_effects"] == 0


def test_a_worker_that_comes_back_after_being_declared_dead_runs_nothing_twice(
    failover: FailoverDrill,
) -> None:
    """Runs last in this module: it restarts the dead executor id."""
    url, ids = failover.url, failover.ids
    before = workflows(url, ids)
    failovers_before = scalar(url, "SELECT count(*) FROM app.failovers")
    back = fleet_worker(
        url,
        failover.tmp,
        failover.victim.executor_id,
        args=("--failover-timeout", str(FAILOVER_TIMEOUT)),
        home=failover.victim.extra_env["SISU_HOME"],
    )
    failover.extra.append(back)
    back.start()
    wait_worker_ready(url, back)
    # DBOS's startup recovery ran before it was ready; two failover sweeps after it, each one
    # heartbeat interval apart, let it look at the fleet and poll its queue several times.
    wait_failover_sweeps(url, back, 2)
    assert back.alive(), back.log_tail()

    assert workflows(url, ids) == before  # status, executor, recovery attempts, updated_at
    assert succeeded_attempts(url, ids, "ExecuteST") == dict.fromkeys(ids, 1)
    _no_duplicate_effects(url, ids)
    assert scalar(url, "SELECT count(*) FROM app.failovers") == failovers_before

    listed = run_sisu(["workers", "list", "--json"], failover.env)
    assert listed.exit_code == 0, listed.stderr
    entry = {w["executorId"]: w for w in listed.json()}[back.executor_id]
    assert entry["alive"] is True
    assert entry["pid"] == back.pid
    assert entry["stoppedAt"] is None
    assert entry["inFlight"] == 0


# --- graceful shutdown ------------------------------------------------------------------------


def test_sigterm_lets_the_run_in_execute_finish_and_exits_0(db_url: str, tmp_path: Path) -> None:
    """Concurrency 1: one run in ExecuteST, one queued behind it. SIGTERM stops dequeuing, lets
    the first finish within the grace period and exits 0; the second is not started."""
    w = fleet_worker(db_url, tmp_path, new_executor_id("gr"), concurrency=1)
    try:
        w.start()
        wait_worker_ready(db_url, w)
        ids = submit(db_url, 2, {"sleepMs": 1500})
        # Whichever of the two was dequeued first (they may share an enqueue millisecond).
        [first] = poll("a run to be inside ExecuteST", lambda: in_execute(db_url, ids) or None,
                       timeout=15)  # fmt: skip
        [second] = set(ids) - {first}
        assert workflows(db_url, [second])[second]["status"] == "ENQUEUED"
        assert w.stop(timeout=20) == 0, w.log_tail()
    finally:
        w.kill()

    assert statuses(db_url, [first, second]) == {first: "succeeded", second: "queued"}
    wf = workflows(db_url, [first, second])
    assert wf[first]["status"] == "SUCCESS"
    assert wf[first]["executor_id"] == w.executor_id
    assert wf[second]["status"] == "ENQUEUED"
    _no_duplicate_effects(db_url, [first])
    assert scalar(
        db_url, "SELECT stopped_at IS NOT NULL FROM app.workers WHERE executor_id = %s",
        (w.executor_id,),
    ) is True  # fmt: skip


def test_grace_0_exits_at_once_and_the_same_executor_id_recovers_the_run(
    db_url: str, tmp_path: Path
) -> None:
    executor_id = new_executor_id("g0")
    w = fleet_worker(db_url, tmp_path, executor_id, args=("--grace", "0"))
    again: WorkerProcess | None = None
    try:
        w.start()
        wait_worker_ready(db_url, w)
        # Long enough that a worker waiting for it (the default 10 s grace) could not exit fast.
        [rid] = submit(db_url, 1, {"sleepMs": 5000})
        poll("the run to be inside ExecuteST", lambda: in_execute(db_url, [rid]) or None,
             timeout=15)  # fmt: skip
        t0 = time.monotonic()
        assert w.stop(timeout=20) == 0, w.log_tail()
        took = time.monotonic() - t0
        assert took < 3.5, took

        # Left as a crash would leave it: pending on this executor, nothing delivered.
        assert statuses(db_url, [rid]) == {rid: "running"}
        wf = workflows(db_url, [rid])[rid]
        assert (wf["status"], wf["executor_id"]) == ("PENDING", executor_id)
        assert succeeded_attempts(db_url, [rid], "ExecuteST") == {}
        assert receipts(db_url, [rid]) == []

        again = fleet_worker(db_url, tmp_path, executor_id, home=w.extra_env["SISU_HOME"])
        again.start()
        wait_all_done(db_url, [rid], timeout=40, watch=(again,))
    finally:
        w.kill()
        if again is not None:
            again.kill()
    assert workflows(db_url, [rid])[rid]["executor_id"] == executor_id
    _one_attempt_per_step(db_url, [rid])
    _no_duplicate_effects(db_url, [rid])


# --- version rollout --------------------------------------------------------------------------


def _findings(env: dict[str, str]) -> tuple[int, list[dict[str, Any]]]:
    result = run_sisu(["doctor", "--json"], env)
    findings: list[dict[str, Any]] = result.json()["findings"]
    return result.exit_code, findings


def test_a_v1_run_with_only_a_v2_worker_is_stranded_named_by_doctor_and_resumed_on_v2(
    db_url: str, sisu_env: dict[str, str], tmp_path: Path
) -> None:
    v2 = fleet_worker(db_url, tmp_path, new_executor_id("v2"), app_version="v2")
    try:
        v2.start()
        wait_worker_ready(db_url, v2)
        [stranded] = submit(db_url, 1, {}, app_version="v1")
        # The v2 worker is serving: a v2 run enqueued after the v1 one completes on it, so a
        # queue poll passed the v1 run over; and its failover and resume sweeps (one per
        # heartbeat) have looked at the fleet twice since.
        [served] = submit(db_url, 1, {}, app_version="v2")
        wait_all_done(db_url, [served], timeout=30, watch=(v2,))
        wait_failover_sweeps(db_url, v2, 2)
        assert statuses(db_url, [stranded]) == {stranded: "queued"}
        wf = workflows(db_url, [stranded])[stranded]
        assert (wf["status"], wf["application_version"]) == ("ENQUEUED", "v1")

        code, findings = _findings(sisu_env)
        assert code == 1
        versions = [f for f in findings if f["name"] == "stranded_version"]
        assert len(versions) == 1, findings
        assert versions[0]["ok"] is False
        assert versions[0]["detail"]["appVersion"] == "v1"
        assert versions[0]["detail"]["runs"] == 1
        assert versions[0]["detail"]["exampleRun"] == stranded

        moved = run_sisu(["run", "resume", stranded, "--app-version", "v2", "--json"], sisu_env)
        assert moved.exit_code == 0, moved.stdout + moved.stderr
        body = moved.json()
        assert body["accepted"] is True
        assert body["runId"] == stranded
        assert body["appVersion"] == "v2"
        wait_all_done(db_url, [stranded], timeout=30, watch=(v2,))
    finally:
        v2.kill()

    wf = workflows(db_url, [stranded])[stranded]
    assert wf["application_version"] == "v2"
    assert wf["executor_id"] == v2.executor_id
    assert scalar(
        db_url, "SELECT count(*) FROM dbos.workflow_status WHERE workflow_uuid = %s", (stranded,)
    ) == 1  # fmt: skip
    assert scalar(db_url, "SELECT app_version FROM app.runs WHERE id = %s", (stranded,)) == "v2"
    _one_attempt_per_step(db_url, [stranded])
    _no_duplicate_effects(db_url, [stranded])

    again = run_sisu(["run", "resume", stranded, "--app-version", "v2", "--json"], sisu_env)
    assert again.exit_code != 0
    assert again.json()["error"] == "invalid_state"


def test_workers_of_two_versions_each_take_only_their_own_versions_runs(
    db_url: str, tmp_path: Path
) -> None:
    fleet = {
        v: fleet_worker(db_url, tmp_path, new_executor_id(v), app_version=v) for v in ("v1", "v2")
    }
    try:
        for w in fleet.values():
            w.start()
        for w in fleet.values():
            wait_worker_ready(db_url, w)
        ids = {v: submit(db_url, 3, {"sleepMs": 200}, app_version=v) for v in ("v1", "v2")}
        every = ids["v1"] + ids["v2"]
        wait_all_done(db_url, every, timeout=40, watch=tuple(fleet.values()))
    finally:
        for w in fleet.values():
            w.kill()
    wf = workflows(db_url, every)
    for v in ("v1", "v2"):
        for rid in ids[v]:
            assert wf[rid]["application_version"] == v
            assert wf[rid]["executor_id"] == fleet[v].executor_id, (v, rid)
    _no_duplicate_effects(db_url, every)


def test_a_run_pending_on_a_dead_v1_worker_is_resumed_on_v2_keeping_its_completed_steps(
    db_url: str, sisu_env: dict[str, str], tmp_path: Path
) -> None:
    """`sisu run resume` also moves a run left pending by a dead worker of a version nobody
    serves any more: the steps it completed are kept (one attempt each), the rest runs on v2."""
    v1 = fleet_worker(db_url, tmp_path, new_executor_id("old"), app_version="v1")
    v2 = fleet_worker(db_url, tmp_path, new_executor_id("new"), app_version="v2")
    try:
        for w in (v1, v2):
            w.start()
        for w in (v1, v2):
            wait_worker_ready(db_url, w)
        [rid] = submit(db_url, 1, {"sleepMs": 1500}, app_version="v1")
        # Inside ExecuteST, and DBOS has recorded DecideST too (a kill between a step's commit and
        # that record is the subject of its own test below).
        poll("the run to be inside ExecuteST", lambda: (
            True if in_execute(db_url, [rid]) and recorded(db_url, rid, "DecideST") else None),
            timeout=15, interval=0.02)  # fmt: skip
        v1.kill()
        wf = workflows(db_url, [rid])[rid]
        assert (wf["status"], wf["executor_id"]) == ("PENDING", v1.executor_id)
        done_before = {s: succeeded_attempts(db_url, [rid], s) for s in STEP_IDS}
        assert done_before["ExecuteST"] == {}

        moved = run_sisu(["run", "resume", rid, "--app-version", "v2", "--json"], sisu_env)
        assert moved.exit_code == 0, moved.stdout + moved.stderr
        assert moved.json()["appVersion"] == "v2"
        wait_all_done(db_url, [rid], timeout=30, watch=(v2,))
    finally:
        v1.kill()
        v2.kill()
    wf = workflows(db_url, [rid])[rid]
    assert (wf["application_version"], wf["executor_id"]) == ("v2", v2.executor_id)
    _one_attempt_per_step(db_url, [rid])
    _no_duplicate_effects(db_url, [rid])


@contextmanager
def stalled_after_compile_commit(url: str, rid_box: list[str]) -> Iterator[None]:
    """Hold every insert into dbos.operation_outputs: a worker then commits CompileST (its app
    rows together with its datasource checkpoint) and stalls before DBOS records the step in
    operation_outputs — the state a crash in that window leaves. `rid_box` gets the run id."""
    with psycopg.connect(url) as locker:
        locker.execute("LOCK TABLE dbos.operation_outputs IN EXCLUSIVE MODE")
        rid_box.extend(submit(url, 1, {}, app_version="v1"))
        rid = rid_box[0]
        poll("CompileST to commit", lambda: True if (
            scalar(url, "SELECT last_step FROM app.runs WHERE id = %s", (rid,)) == "CompileST"
            and scalar(url, "SELECT count(*) FROM dbos.datasource_outputs WHERE workflow_id = %s",
                       (rid,))
        ) else None, timeout=20)  # fmt: skip
        yield
        locker.rollback()


def _compiled_once(url: str, rid: str) -> None:
    assert succeeded_attempts(url, [rid], "CompileST") == {rid: 1}
    assert scalar(url, "SELECT count(*) FROM app.opencode_calls WHERE run_id = %s", (rid,)) == 1


def test_a_crash_between_a_steps_commit_and_its_dbos_record_recovers_without_rerunning_it(
    db_url: str, tmp_path: Path
) -> None:
    """The control for the next test: DBOS's own recovery (the same executor id restarting)
    replays the committed step from its datasource checkpoint."""
    executor_id = new_executor_id("cw")
    w = fleet_worker(db_url, tmp_path, executor_id)
    again: WorkerProcess | None = None
    box: list[str] = []
    try:
        w.start()
        wait_worker_ready(db_url, w)
        with stalled_after_compile_commit(db_url, box):
            w.kill()
        [rid] = box
        assert not recorded(db_url, rid, "CompileST")
        again = fleet_worker(db_url, tmp_path, executor_id, home=w.extra_env["SISU_HOME"])
        again.start()
        wait_all_done(db_url, [rid], timeout=30, watch=(again,))
    finally:
        w.kill()
        if again is not None:
            again.kill()
    _compiled_once(db_url, rid)
    _one_attempt_per_step(db_url, [rid])


def test_resume_keeps_a_step_that_committed_just_before_the_crash(
    db_url: str, sisu_env: dict[str, str], tmp_path: Path
) -> None:
    """`sisu run resume` must start after the last step with a checkpoint in either DBOS
    table: a step that committed its datasource checkpoint but was not yet recorded in
    dbos.operation_outputs is done, and must not run (and call the compiler) again."""
    v1 = fleet_worker(db_url, tmp_path, new_executor_id("cv1"), app_version="v1")
    v2 = fleet_worker(db_url, tmp_path, new_executor_id("cv2"), app_version="v2")
    box: list[str] = []
    try:
        for w in (v1, v2):
            w.start()
        for w in (v1, v2):
            wait_worker_ready(db_url, w)
        with stalled_after_compile_commit(db_url, box):
            v1.kill()
        [rid] = box
        assert not recorded(db_url, rid, "CompileST")
        moved = run_sisu(["run", "resume", rid, "--app-version", "v2", "--json"], sisu_env)
        assert moved.exit_code == 0, moved.stdout + moved.stderr
        wait_all_done(db_url, [rid], timeout=30, watch=(v2,))
    finally:
        v1.kill()
        v2.kill()
    _compiled_once(db_url, rid)
    _one_attempt_per_step(db_url, [rid])


# --- heartbeats and the failover timeout ------------------------------------------------------

HEARTBEAT_SECONDS = 2.0  # sisu.config.Settings.heartbeat_seconds


def test_a_ready_worker_never_looks_older_than_one_heartbeat_interval(
    db_url: str, tmp_path: Path
) -> None:
    """The heartbeat row is claimed before DBOS launches (~1.2 s); unless the worker beats
    again as soon as it is ready, it looks ~3.2 s old just when it dequeues its first runs,
    and a peer with --failover-timeout 3 takes it for dead."""
    w = fleet_worker(db_url, tmp_path, new_executor_id("hb"))
    try:
        w.start()
        wait_worker_ready(db_url, w)
        # The first beat goes out as the worker becomes ready; give it a moment to commit
        # (a loaded machine can take longer than a heartbeat interval to launch a worker).
        time.sleep(0.5)
        ages = []
        deadline = time.monotonic() + HEARTBEAT_SECONDS + 1
        while time.monotonic() < deadline:
            ages.append(
                scalar(
                    db_url,
                    "SELECT extract(epoch FROM now() - heartbeat_at)::float8 FROM app.workers "
                    "WHERE executor_id = %s",
                    (w.executor_id,),
                )
            )
            time.sleep(0.05)
        assert w.alive()
    finally:
        w.kill()
    assert max(ages) < HEARTBEAT_SECONDS + 0.5, max(ages)


def test_a_failover_timeout_shorter_than_one_and_a_half_heartbeats_is_refused_at_start(
    db_url: str, sisu_env: dict[str, str]
) -> None:
    """Workers heartbeat every 2 s: a failover timeout of 1 s would take live workers for dead
    and recover their in-flight runs, so the worker fails closed before it claims a row."""
    refused = run_sisu(
        ["worker", "--failover-timeout", "1", "--admin-port", "0"], sisu_env, timeout=60
    )
    assert refused.exit_code == 2, refused.stdout + refused.stderr
    [line] = refused.stderr.splitlines()
    assert line.startswith("sisu: error[validation_error]: --failover-timeout 1 "), line
    assert scalar(db_url, "SELECT count(*) FROM app.workers") == 0


def test_the_shortest_accepted_failover_timeout_never_takes_runs_from_a_live_worker(
    db_url: str, tmp_path: Path
) -> None:
    """At 1.5 heartbeats (3 s), two busy live workers never take each other for dead: each
    keeps its own runs, and no failover is recorded."""
    shortest = 1.5 * HEARTBEAT_SECONDS  # sisu.worker.process.MIN_FAILOVER_HEARTBEATS
    args = ("--failover-timeout", f"{shortest:g}")
    pair = [
        fleet_worker(db_url, tmp_path, new_executor_id(n), concurrency=3, args=args)
        for n in ("ft-a", "ft-b")
    ]
    try:
        for w in pair:
            w.start()
        for w in pair:
            wait_worker_ready(db_url, w)
        for w in pair:
            wait_heartbeat_after_ready(db_url, w)
        # Each run stays inside ExecuteST longer than a failover timeout plus a heartbeat
        # interval: a peer whose heartbeat lagged behind its timeout would be taken for dead
        # with its runs in flight.
        ids = submit(db_url, 6, {"sleepMs": 6000})

        def dequeued() -> dict[str, str] | None:
            """Who took each run, once every run is taken and both workers hold some (three
            slots each: three runs each)."""
            taken = {
                wid: w["executor_id"]
                for wid, w in workflows(db_url, ids).items()
                if w["status"] != "ENQUEUED"
            }
            return taken if len(taken) == len(ids) and len(set(taken.values())) == 2 else None

        held = poll("both workers to take every run", dequeued, timeout=20)
        # Both workers sweep twice while the other is busy.
        for w in pair:
            wait_failover_sweeps(db_url, w, 2)
        wait_all_done(db_url, ids, timeout=60, watch=tuple(pair))
    finally:
        for w in pair:
            w.kill()
    assert rows(db_url, "SELECT dead_executor_id, recovered_by FROM app.failovers") == []
    finished_by = {wid: w["executor_id"] for wid, w in workflows(db_url, ids).items()}
    assert finished_by == held
    assert {w["recovery_attempts"] for w in workflows(db_url, ids).values()} == {1}
    _one_attempt_per_step(db_url, ids)
    _no_duplicate_effects(db_url, ids)
