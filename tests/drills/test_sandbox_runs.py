"""`sisu worker --executor sandbox`: a run's testCommand runs in bubblewrap inside a workspace
rebuilt from the repository's commit. A fixed test passes and the patch applies to the user's
untouched repository; a failing command fails the run with its tail; a timeout kills it; the
network and the host's /tmp are out of reach; a worker killed mid-command runs it again after
restart, in a rebuilt workspace, and the run succeeds."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from sisu.drills.processes import WorkerProcess
from sisu.sandbox import probe
from sisu.service import repair
from tests.integration.test_repo_intents import git
from tests.support.cli import FAST_BACKOFF, pty_run, run_sisu, sisu_env_for
from tests.support.db import rows
from tests.support.polling import poll
from tests.support.runs import fast_backend, run_row, start_intent, wait_run_done, wait_run_status
from tests.support.workers import intent_worker, wait_worker_ready

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = REPO_ROOT / "examples" / "fix-a-test"
FIX = json.loads((EXAMPLE / "intent.json").read_text())

pytestmark = pytest.mark.skipif(
    probe("bwrap") is not None and os.environ.get("SISU_REQUIRE_SANDBOX") != "1",
    reason=f"bubblewrap cannot create namespaces here: {probe('bwrap')}",
)


def example_repo(path: Path) -> Path:
    subprocess.run(["cp", "-R", str(EXAMPLE / "repo"), str(path)], check=True)
    git(path, "init", "--quiet")
    git(path, "add", ".")
    git(path, "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-qm", "bug")
    return path


def sandbox_worker(url: str, tmp_path: Path, executor_id: str | None = None) -> WorkerProcess:
    fast = {"SISU_STEP_BACKOFF_SECONDS": FAST_BACKOFF}
    return intent_worker(
        url, tmp_path, "sbx", "--executor", "sandbox", env=fast, executor_id=executor_id
    ).start()


def output_artifacts(url: str, run_id: str) -> list[str]:
    found = rows(
        url,
        "SELECT kind FROM app.artifacts WHERE run_id = %s AND step_id = 'ExecuteST' ORDER BY idx",
        (run_id,),
    )
    return [a["kind"] for a in found]


def run_command(
    url: str, tmp_path: Path, command: str, want: str, **constraints: Any
) -> dict[str, Any]:
    """One run whose scripted plan runs `command` in the sandbox, to status `want`."""
    worker = sandbox_worker(url, tmp_path)
    try:
        wait_worker_ready(url, worker)
        with fast_backend(url) as b:
            run_id = start_intent(
                b, "run a command", inputs={"testCommand": command}, constraints=constraints
            )
        if want == "succeeded":
            wait_run_done(url, run_id, worker=worker)
        else:
            wait_run_status(url, run_id, want, worker=worker)
    finally:
        worker.stop()
    return run_row(url, run_id)


def test_the_example_fix_passes_its_test_and_its_patch_applies(db_url: str, tmp_path: Path) -> None:
    repo = example_repo(tmp_path / "repo")
    head = git(repo, "rev-parse", "HEAD")
    env = sisu_env_for(db_url, tmp_path / "cli")
    worker = sandbox_worker(db_url, tmp_path)
    try:
        wait_worker_ready(db_url, worker)
        created = run_sisu(
            [
                "intent", "create", "--goal", FIX["goal"], "--repo", str(repo),
                "--inputs", json.dumps(FIX["inputs"]),
                "--constraints", json.dumps(FIX["constraints"]),
            ],
            env,
        )  # fmt: skip
        assert created.exit_code == 0, created.stderr
        run_id = created.stdout.strip()
        ran = run_sisu(["intent", "run", run_id, "--wait", "--timeout", "90"], env)
        assert ran.exit_code == 0, ran.stderr
    finally:
        worker.stop()
    logs = run_sisu(["run", "logs", run_id], {**env, "SISU_HOME": str(tmp_path / "home")})
    assert logs.exit_code == 0 and "ok: calc.sh 2 2 = 4" in logs.stdout
    [step] = rows(
        db_url,
        "SELECT output FROM app.run_steps WHERE run_id = %s AND step_id = 'ExecuteST'",
        (run_id,),
    )
    assert step["output"]["executor"] == "sandbox"
    assert step["output"]["exitCode"] == 0
    assert output_artifacts(db_url, run_id) == ["stdout", "stderr"]
    # The patch, through a real terminal, applies to the user's repository, which is untouched.
    code, shown = pty_run(["run", "patch", run_id], env)
    assert code == 0 and "+echo $(( $1 + $2 ))" in shown
    patch = run_sisu(["run", "patch", run_id], env)
    assert git(repo, "status", "--porcelain") == ""
    assert git(repo, "rev-parse", "HEAD") == head
    subprocess.run(["git", "-C", str(repo), "apply", "--check", "-"], input=patch.stdout,
                   text=True, check=True)  # fmt: skip
    subprocess.run(["git", "-C", str(repo), "apply", "-"], input=patch.stdout, text=True,
                   check=True)  # fmt: skip
    assert subprocess.run(["sh", "test.sh"], cwd=repo).returncode == 0
    audit = run_sisu(["audit", "--json", "--run", run_id], env)
    assert audit.exit_code == 0, audit.stdout


def test_a_failing_command_fails_the_run_with_its_tail_and_retry_runs_it_again(
    db_url: str, tmp_path: Path
) -> None:
    run = run_command(db_url, tmp_path, "echo before the end; echo broken >&2; exit 3", "failed")
    assert run["error"]["code"] == "command_failed"
    assert run["next_action"] == "REPAIR"
    assert "exit 3" in run["error"]["message"] and "broken" in run["error"]["message"]
    assert output_artifacts(db_url, run["id"]) == ["stdout", "stderr"]
    with fast_backend(db_url) as b:
        repair.retry_run(b, run["id"])
    worker = sandbox_worker(db_url, tmp_path)
    try:
        poll(
            "the retry to fail again",
            lambda: (
                True
                if len(
                    rows(
                        db_url,
                        "SELECT 1 FROM app.run_steps WHERE run_id = %s AND step_id = 'ExecuteST' "
                        "AND phase = 'failed'",
                        (run["id"],),
                    )
                )
                == 2
                else None
            ),
            timeout=60,
        )
        wait_run_status(db_url, run["id"], "failed", worker=worker)
    finally:
        worker.stop()
    assert run_row(db_url, run["id"])["retry_count"] == 1
    assert output_artifacts(db_url, run["id"]) == ["stdout", "stderr"] * 2


def test_a_command_over_its_timeout_is_killed(db_url: str, tmp_path: Path) -> None:
    run = run_command(db_url, tmp_path, "sleep 60 & sleep 60", "failed", timeoutSeconds=2)
    assert run["error"]["code"] == "command_timeout"
    assert run["next_action"] == "REPAIR"
    assert (run["updated_at"] - run["created_at"]).total_seconds() < 30


def test_the_network_and_the_hosts_tmp_are_out_of_reach(db_url: str, tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.setblocking(False)
    port = listener.getsockname()[1]
    marker = f"/tmp/sisu-sandbox-{uuid.uuid4().hex}"
    try:
        connect = (
            f'touch {marker} && python3 -c "import socket; '
            f"socket.create_connection(('127.0.0.1', {port}), timeout=2)\""
        )
        run = run_command(db_url, tmp_path, connect, "failed")
        assert run["error"]["code"] == "command_failed"
        # It got as far as connecting (touch worked, python ran): its own loopback said no.
        assert "ConnectionRefusedError" in run["error"]["message"], run["error"]
        with pytest.raises(BlockingIOError):
            listener.accept()  # nothing ever connected
    finally:
        listener.close()
    assert not Path(marker).exists()


def test_a_worker_killed_mid_command_runs_it_again_in_a_rebuilt_workspace(
    db_url: str, tmp_path: Path
) -> None:
    # The command leaves a file in the workspace, and refuses to run where one is left: it
    # succeeds only in a workspace rebuilt from scratch. Its pid goes where the test can see it.
    seen = tmp_path / "home" / "seen"
    seen.mkdir(parents=True)
    command = "test ! -e dirty && touch dirty && echo $$ >> pids && sleep 4 && cat pids"
    first = sandbox_worker(db_url, tmp_path, f"sbx-kill-{uuid.uuid4().hex[:8]}")
    wait_worker_ready(db_url, first)
    with fast_backend(db_url) as b:
        run_id = start_intent(b, "killed mid-command", inputs={"testCommand": command})
    workspace = tmp_path / "home" / "workspaces" / run_id
    poll("the command to start", lambda: True if (workspace / "dirty").exists() else None,
         timeout=60)  # fmt: skip
    first.kill()
    # die-with-parent: the command does not outlive its worker.
    poll("the killed worker's command to die", lambda: None if _sleepers(workspace) else True,
         timeout=10)  # fmt: skip
    second = first.restart()
    try:
        wait_run_done(db_url, run_id, worker=second, timeout=90)
    finally:
        second.stop()
    [step] = rows(
        db_url,
        "SELECT output FROM app.run_steps WHERE run_id = %s AND step_id = 'ExecuteST' "
        "AND phase = 'succeeded'",
        (run_id,),
    )
    assert step["output"]["exitCode"] == 0
    assert (workspace / "pids").read_text().count("\n") == 1  # rebuilt: one run's pid only


def _sleepers(workspace: Path) -> list[int]:
    """Processes whose working directory is inside the workspace (the command and children)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if cwd.startswith(str(workspace)) or cwd == "/workspace":
            found.append(int(proc.name))
    time.sleep(0.1)
    return found


def test_run_logs_follows_the_command_until_the_run_settles(db_url: str, tmp_path: Path) -> None:
    worker = sandbox_worker(db_url, tmp_path)
    env = {**sisu_env_for(db_url, tmp_path / "cli"), "SISU_HOME": str(tmp_path / "home")}
    try:
        wait_worker_ready(db_url, worker)
        with fast_backend(db_url) as b:
            run_id = start_intent(
                b,
                "print slowly",
                inputs={
                    "testCommand": "for i in 1 2 3; do echo line $i; sleep 1; done; echo e >&2"
                },
            )
        followed = run_sisu(["run", "logs", run_id, "--follow"], env, timeout=60)
    finally:
        worker.stop()
    assert followed.exit_code == 0, followed.stderr
    assert followed.stdout == "line 1\nline 2\nline 3\n"
    assert followed.stderr == "e\n"
    assert run_row(db_url, run_id)["status"] == "succeeded"
    missing = run_sisu(["run", "logs", "no-such-run"], env)
    assert missing.exit_code == 4
