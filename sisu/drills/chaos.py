"""The chaos drill (Walkthrough E): real workers killed with SIGKILL at chosen moments — inside
ExecuteST, or after a delivery to the outside system and before the step's checkpoint — or the
database restarted, or the api-shim killed mid-request; then the runs are drained and audited.
Zero duplicate effects and every run succeeded, or the drill fails."""

from __future__ import annotations

import os
import random
import signal
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from sisu.config import Settings
from sisu.contracts.ops import ChaosResult, KillRecord, Percentiles
from sisu.contracts.runs import IntentCreate, RunRequest
from sisu.db import embedded
from sisu.db.connection import connect
from sisu.db.queries import q
from sisu.drills import verdict
from sisu.drills.processes import WorkerProcess, wait_for
from sisu.errors import DrillFailed, SisuError, ValidationFailed
from sisu.service import intents
from sisu.service.backend import Backend
from sisu.workflow.steps.drill_hooks import ENV_MARKER_DIR, ENV_PAUSE

KILL_POINTS = ("execute", "after-effect", "random")
FAULTS = ("worker-kill", "postgres-restart", "postgres-kill", "shim-kill")
# Faults that stop the embedded server, which the drill cannot do to an external one.
EMBEDDED_ONLY = ("postgres-restart", "postgres-kill")
# ExecuteST holds still this long before delivering (inputs.sleepMs), and a drill worker pauses
# this long after each delivery, so that a kill can land in either window.
EXECUTE_SLEEP_MS = 600
AFTER_EFFECT_PAUSE_S = 0.4
TASKS_PER_RUN = 2


@dataclass(frozen=True)
class ChaosOptions:
    """What a chaos drill is asked to do, checked when it is built: the CLI builds it before
    anything connects, so that bad flags write nothing and start nothing."""

    iterations: int
    runs: int
    kill_point: str
    fault: str
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.kill_point not in KILL_POINTS:
            raise ValidationFailed(f"--kill-point must be one of {', '.join(KILL_POINTS)}")
        if self.fault not in FAULTS:
            raise ValidationFailed(f"--fault must be one of {', '.join(FAULTS)}")


@dataclass
class Drill:
    url: str
    settings: Settings
    options: ChaosOptions
    progress: Callable[[str], None]
    work_dir: Path
    run_ids: list[str] = field(default_factory=list)
    kills: list[KillRecord] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.options.seed)
        self.executor_id = f"chaos-{uuid.uuid4().hex[:8]}"
        self.markers = self.work_dir / "markers"
        self.markers.mkdir(parents=True, exist_ok=True)
        self.backend = Backend.from_settings(self.url, self.settings, pool_size=2)
        self.worker: WorkerProcess | None = None
        self.seen_markers: set[str] = set()

    # -- processes -------------------------------------------------------------------------

    def start_worker(self) -> WorkerProcess:
        env = {"SISU_HOME": str(self.settings.home), ENV_MARKER_DIR: str(self.markers)}
        wanted = self.options
        if wanted.kill_point in ("after-effect", "random") and wanted.fault == "worker-kill":
            env[ENV_PAUSE] = str(AFTER_EFFECT_PAUSE_S)
        self.worker = WorkerProcess(
            url=self.url,
            executor_id=self.executor_id,
            app_version=self.settings.app_version,
            log_path=self.work_dir / f"{self.executor_id}.log",
            extra_env=env,
        ).start()
        return self.worker

    # -- runs ------------------------------------------------------------------------------

    def submit(self, count: int) -> None:
        for _ in range(count):
            intent = intents.create_intent(
                self.backend,
                IntentCreate(
                    goal="chaos drill: deliver under fire",
                    inputs={"sleepMs": EXECUTE_SLEEP_MS, "tasks": TASKS_PER_RUN},
                ),
            )
            intents.start_run(self.backend, intent.intent_id, RunRequest(trace_id="chaos"))
            self.run_ids.append(intent.intent_id)

    def keep_busy(self) -> None:
        """Submit another batch when every run of the drill has finished: a fault needs a
        run in flight to land in."""
        if self.unfinished() == 0:
            self.submit(self.options.runs)

    def unfinished(self) -> int:
        return verdict.unfinished(self.url, self.run_ids)

    def evidence(self, run_id: str) -> dict[str, Any]:
        with connect(self.url) as conn:
            row = conn.execute(q("chaos_run_evidence"), {"run_id": run_id}).fetchone()
        assert row is not None
        return dict(row)

    # -- targets ---------------------------------------------------------------------------

    def _wait_marker(self, point: str) -> str:
        """The run of the first `point` marker written from now on (older markers belong to
        moments long past)."""
        pattern = f"*.{point}"
        self.seen_markers.update(m.name for m in self.markers.glob(pattern))

        def probe() -> str | None:
            for marker in self.markers.glob(pattern):
                if marker.name not in self.seen_markers:
                    self.seen_markers.add(marker.name)
                    return marker.name.split(".")[0]
            self.keep_busy()
            return None

        return wait_for(f"a run at {point}", probe, timeout=60, worker=self.worker)

    def wait_in_execute(self) -> str:
        run_id = self._wait_marker("execute")
        # Land somewhere inside the step's pre-delivery window, not always at its start.
        time.sleep(self.rng.uniform(0, EXECUTE_SLEEP_MS / 1000 / 2))
        return run_id

    def wait_after_effect(self) -> str:
        return self._wait_marker("after-effect")

    def wait_recovered(self, run_id: str, since: datetime) -> float | None:
        """Seconds from the fault to the interrupted run's next checkpoint."""

        def probe() -> datetime | None:
            ev = self.evidence(run_id)
            return ev["updated_at"] if ev["updated_at"] > since else None

        try:
            moved = wait_for("the run's next checkpoint", probe, timeout=30, worker=self.worker)
        except Exception:
            return None
        return round((moved - since).total_seconds(), 3)

    # -- faults ----------------------------------------------------------------------------

    def kill_worker(self, iteration: int) -> None:
        point = self.options.kill_point
        if point == "random":
            point = self.rng.choice(("execute", "after-effect"))
        run_id = self.wait_in_execute() if point == "execute" else self.wait_after_effect()
        assert self.worker is not None
        pid = self.worker.pid
        self.worker.kill()
        at = datetime.now(UTC)
        before = self.evidence(run_id)
        self.progress(f"kill {iteration}: SIGKILL pid {pid} at {point} of run {run_id[:8]}")
        self.start_worker()
        self.kills.append(
            KillRecord(
                iteration=iteration,
                fault="worker-kill",
                point=point,
                run_id=run_id,
                at=at,
                pid=pid,
                receipts_at_kill=before["receipts"],
                execute_done_at_kill=before["execute_done"],
                recovery_seconds=None
                if before["status"] in verdict.TERMINAL
                else self.wait_recovered(run_id, at),
            )
        )

    def restart_postgres(self, iteration: int) -> None:
        run_id = self.wait_in_execute()
        at = datetime.now(UTC)
        embedded.stop(self.settings.home)
        embedded.start(self.settings.home)
        before = self.evidence(run_id)
        self.progress(f"fault {iteration}: restarted the embedded PostgreSQL mid-run")
        self.kills.append(
            KillRecord(
                iteration=iteration,
                fault="postgres-restart",
                point="execute",
                run_id=run_id,
                at=at,
                pid=None,
                receipts_at_kill=before["receipts"],
                execute_done_at_kill=before["execute_done"],
                recovery_seconds=self.wait_recovered(run_id, at),
            )
        )

    def kill_postgres(self, iteration: int) -> None:
        """SIGKILL the postmaster while a run is inside ExecuteST, then start it again: a
        crash, not a shutdown. The worker is never restarted; its runs must still finish."""
        run_id = self.wait_in_execute()
        server = embedded.running_server(self.settings.home)
        if server is None:
            raise DrillFailed("the embedded PostgreSQL is not running; nothing to kill")
        os.kill(server.pid, signal.SIGKILL)
        at = datetime.now(UTC)
        self.progress(f"fault {iteration}: SIGKILL the embedded PostgreSQL (pid {server.pid})")
        wait_for("the embedded PostgreSQL to start again", self._start_postgres, timeout=60)
        before = self.evidence(run_id)
        self.kills.append(
            KillRecord(
                iteration=iteration,
                fault="postgres-kill",
                point="execute",
                run_id=run_id,
                at=at,
                pid=server.pid,
                receipts_at_kill=before["receipts"],
                execute_done_at_kill=before["execute_done"],
                recovery_seconds=self.wait_recovered(run_id, at),
            )
        )

    def _start_postgres(self) -> bool | None:
        # The dead postmaster's backends take a moment to let go of its shared memory; until
        # then a new server refuses to start.
        try:
            embedded.start(self.settings.home)
        except (SisuError, psycopg.Error):
            return None
        return True

    # -- the drill -------------------------------------------------------------------------

    def run(self) -> ChaosResult:
        self.start_worker()
        try:
            self.submit(self.options.runs)
            for i in range(1, self.options.iterations + 1):
                if self.options.fault == "postgres-restart":
                    self.restart_postgres(i)
                elif self.options.fault == "postgres-kill":
                    self.kill_postgres(i)
                else:
                    self.kill_worker(i)
            self.progress(f"draining {self.unfinished()} unfinished run(s)")
            wait_for(
                "every run to finish",
                lambda: True if self.unfinished() == 0 else None,
                timeout=180,
                worker=self.worker,
                interval=0.2,
            )
        finally:
            if self.worker is not None:
                self.worker.stop()
            self.backend.close()
        return self.result()

    def result(self) -> ChaosResult:
        return verdict.summarize(
            self.url, self.settings, self.run_ids, self.kills, self.options.iterations
        )


def run(
    url: str,
    settings: Settings,
    options: ChaosOptions,
    progress: Callable[[str], None] = lambda _: None,
) -> ChaosResult:
    fault = options.fault
    if fault == "shim-kill":
        from sisu.drills import shim_chaos

        return shim_chaos.run(
            url, settings, iterations=options.iterations, runs=options.runs, progress=progress
        )
    if fault in EMBEDDED_ONLY and not settings.embedded:
        progress(f"SISU_DATABASE_URL points at an external server, which {fault} cannot touch")
        return ChaosResult(
            ok=True,
            iterations=options.iterations,
            kills=0,
            runs=0,
            succeeded=0,
            duplicates=0,
            pending_left=0,
            recovery_seconds=Percentiles(p50=None, max=None),
            audit_ok=True,
            skipped=f"external database: {fault} needs the embedded server",
            kill_log=[],
        )
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    work_dir = Path(tempfile.mkdtemp(prefix="chaos-", dir=settings.logs_dir))
    return Drill(url, settings, options, progress, work_dir).run()
