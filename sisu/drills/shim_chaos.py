"""`sisu chaos --fault shim-kill`: kill -9 the api-shim while clients are submitting. Clients
retry as a careful client would: each intent is created with an Idempotency-Key reused on every
retry (a reply lost to the kill must not leave an orphan intent), and a trigger is idempotent
(the same intent converges on its one run). Every intent the shim accepted (201) must end with
exactly one succeeded run, and the clients must have created no other intent."""

from __future__ import annotations

import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sisu.config import Settings
from sisu.contracts.ops import ChaosResult, KillRecord
from sisu.db.connection import connect
from sisu.db.queries import q
from sisu.drills import verdict
from sisu.drills.processes import WorkerProcess
from sisu.errors import DrillFailed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Shim:
    def __init__(self, url: str, port: int, log_path: Any) -> None:
        self.url, self.port, self.log_path = url, port, log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "SISU_DATABASE_URL": self.url}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "sisu", "serve", "--port", str(self.port)],
                env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                _request("GET", f"http://127.0.0.1:{self.port}/healthz", None, timeout=1)
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"api-shim did not come up on port {self.port}")

    def kill(self) -> int:
        assert self.proc is not None
        pid = self.proc.pid
        os.kill(pid, signal.SIGKILL)
        self.proc.wait()
        return pid

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def _request(
    method: str, url: str, body: Any, timeout: float = 5, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def _until_ok(call: Callable[[], tuple[int, Any]], ok: int, deadline: float) -> Any:
    """Retry through a dead shim until it answers `ok`: refused or reset connections, and
    replies cut off mid-body (a kill can land while the shim writes one)."""
    while time.monotonic() < deadline:
        try:
            status, body = call()
        except (OSError, ValueError, http.client.HTTPException):
            time.sleep(0.1)
            continue
        if status == ok:
            return body
        raise RuntimeError(f"unexpected HTTP {status}: {body}")
    raise TimeoutError("gave up retrying through the dead api-shim")


def run(  # noqa: C901 — the drill's phases in order; split when it grows
    url: str,
    settings: Settings,
    *,
    iterations: int,
    runs: int,
    progress: Callable[[str], None],
) -> ChaosResult:
    logs = settings.logs_dir
    logs.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    worker = WorkerProcess(
        url=url,
        executor_id=f"shimchaos-{uuid.uuid4().hex[:8]}",
        app_version=settings.app_version,
        log_path=logs / "shim-chaos-worker.log",
        extra_env={"SISU_HOME": str(settings.home)},
    ).start()
    shim = Shim(url, port, logs / "shim-chaos-shim.log")
    shim.start()
    accepted: list[str] = []
    lock = threading.Lock()
    total = max(runs, iterations * 2)
    deadline = time.monotonic() + 180

    def post(
        path: str, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> Callable[[], tuple[int, Any]]:
        return lambda: _request("POST", f"{base}{path}", body, headers=headers)

    # Every goal starts with the drill's tag, so the verdict can count the intents the clients
    # created, whether or not a reply reached them.
    tag = f"shim chaos {uuid.uuid4().hex[:12]} "

    failures: list[BaseException] = []

    def client(n: int) -> None:
        try:
            submit(n)
        except BaseException as exc:  # reported after the join, not lost in the thread
            failures.append(exc)

    def submit(n: int) -> None:
        for _ in range(n):
            # One key per intent, reused by every retry of it: a retry after a lost 201
            # replays the intent the shim created instead of creating a second one.
            key = str(uuid.uuid4())
            create = post("/intents", {"goal": f"{tag}{key}"}, {"Idempotency-Key": key})
            created = _until_ok(create, 201, deadline)
            intent_id = created["intentId"]
            with lock:
                accepted.append(intent_id)
            _until_ok(post(f"/intents/{intent_id}/run", {"traceId": "chaos"}), 202, deadline)

    threads = [
        threading.Thread(target=client, args=(total // 2 + (k < total % 2),)) for k in range(2)
    ]
    kills: list[KillRecord] = []
    rng = random.Random(0)
    try:
        for t in threads:
            t.start()
        for i in range(1, iterations + 1):
            time.sleep(rng.uniform(0.05, 0.4))
            at = datetime.now(UTC)
            pid = shim.kill()
            progress(f"kill {i}: SIGKILL api-shim pid {pid}")
            started = time.monotonic()
            shim.start()
            kills.append(
                KillRecord(
                    iteration=i, fault="shim-kill", point="request", run_id=None, at=at, pid=pid,
                    receipts_at_kill=0, execute_done_at_kill=False,
                    recovery_seconds=round(time.monotonic() - started, 3),
                )
            )  # fmt: skip
        for t in threads:
            t.join()
        if failures:
            raise DrillFailed(f"a drill client failed: {failures[0]!r}") from failures[0]
        while time.monotonic() < deadline and verdict.unfinished(url, accepted):
            time.sleep(0.2)
    finally:
        shim.stop()
        worker.stop()
    result = verdict.summarize(url, settings, accepted, kills, iterations)
    with connect(url) as conn:
        row = conn.execute(q("chaos_drill_intents"), {"prefix": tag}).fetchone()
    created = int(row["n"]) if row else 0
    # More intents than accepted ones means a client's retry created an orphan.
    return result.model_copy(
        update={"intents": created, "ok": result.ok and created == len(accepted)}
    )
