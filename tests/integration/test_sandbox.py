"""The sandbox with a real bwrap: no network, nothing of the host writable or visible but the
workspace, a private /tmp, a scrubbed environment, limits, a timeout that kills everything the
command started, and capped output. Each escape that the sandbox stops is also shown to work
with isolation="none", so a test here cannot pass for a command that never tried.

Skipped only where `probe()` says this machine cannot create the namespaces; with
SISU_REQUIRE_SANDBOX=1 (CI) that is a failure instead."""

from __future__ import annotations

import hashlib
import os
import pickle
import socket
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sisu.sandbox import (
    CommandResult,
    Isolation,
    Limits,
    SandboxExecutor,
    SandboxUnavailable,
    probe,
    run_command,
)
from sisu.sandbox import command as sandbox_command
from sisu.workflow.steps.errors import CommandFailed, CommandTimeout
from sisu.workflow.steps.ports import Work


@pytest.fixture(scope="module")
def bwrap_works() -> None:
    reason = probe("bwrap")
    if reason is None:
        return
    message = f"bwrap cannot create its namespaces here: {reason}"
    if os.environ.get("SISU_REQUIRE_SANDBOX") == "1":
        pytest.fail(f"SISU_REQUIRE_SANDBOX=1 but {message}")
    pytest.skip(message)


@pytest.fixture(params=["bwrap", "none"])
def isolation(request: pytest.FixtureRequest) -> Isolation:
    """Both isolations, for what must hold with and without the sandbox."""
    if request.param == "bwrap":
        request.getfixturevalue("bwrap_works")
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    folder = tmp_path / "workspace"
    folder.mkdir()
    return folder


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    return tmp_path / "logs"


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A TCP server on 127.0.0.1 that never accepts on its own: what connected stays queued."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.setblocking(False)
    yield server
    server.close()


def run(
    command: str, workspace: Path, logs: Path, isolation: Isolation, **options: Any
) -> CommandResult:
    options.setdefault("timeout_seconds", 60)
    return run_command(command, workspace, logs, isolation=isolation, **options)


CONNECT = """
import socket, sys
socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5).close()
"""


def connected(server: socket.socket) -> bool:
    try:
        conn, _ = server.accept()
    except BlockingIOError:
        return False
    conn.close()
    return True


@pytest.mark.usefixtures("bwrap_works")
def test_no_network_inside(workspace: Path, logs: Path, listener: socket.socket) -> None:
    (workspace / "connect.py").write_text(CONNECT)
    port = listener.getsockname()[1]
    result = run(f"python3 connect.py {port}", workspace, logs, "bwrap")
    assert result.exit_code == 1
    assert "ConnectionRefusedError" in (logs / "stderr.log").read_text()
    assert not connected(listener)


def test_without_isolation_the_same_connect_reaches_the_host(
    workspace: Path, logs: Path, listener: socket.socket
) -> None:
    (workspace / "connect.py").write_text(CONNECT)
    port = listener.getsockname()[1]
    result = run(f"python3 connect.py {port}", workspace, logs, "none")
    assert result.exit_code == 0
    assert connected(listener)


def escape_attempts(outside: Path, tag: str) -> str:
    """A command that writes in the workspace and tries to write outside it, recording each
    attempt's exit status in the workspace."""
    return (
        f"echo in > inside.txt; "
        f"echo x > {outside}/{tag}; echo $? > status-outside; "
        f"echo x > /usr/{tag}; echo $? > status-usr; "
        f"echo x > /etc/{tag}; echo $? > status-etc; "
        f"ls -d /root /home /var /work {outside} > visible.txt 2>/dev/null; true"
    )


@pytest.mark.usefixtures("bwrap_works")
def test_only_the_workspace_is_writable_and_no_host_folder_is_visible(
    tmp_path: Path, workspace: Path, logs: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    tag = f"sisu-escape-{uuid.uuid4().hex}"
    result = run(escape_attempts(outside, tag), workspace, logs, "bwrap")
    assert result.exit_code == 0, result.tail
    assert (workspace / "inside.txt").read_text() == "in\n"
    for target in ("outside", "usr", "etc"):
        assert (workspace / f"status-{target}").read_text().strip() != "0"
    assert not (outside / tag).exists()
    assert not Path("/usr", tag).exists()
    assert not Path("/etc", tag).exists()
    assert (workspace / "visible.txt").read_text() == ""


def test_without_isolation_the_same_write_lands_outside(
    tmp_path: Path, workspace: Path, logs: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    tag = f"sisu-escape-{uuid.uuid4().hex}"
    # Only the write to the test's own folder: the host's /usr and /etc stay untouched.
    result = run(f"echo x > {outside}/{tag}", workspace, logs, "none")
    assert result.exit_code == 0
    assert (outside / tag).read_text() == "x\n"


@pytest.mark.usefixtures("bwrap_works")
def test_secrets_in_etc_are_hidden(workspace: Path, logs: Path) -> None:
    result = run("cat /etc/shadow > shadow.txt", workspace, logs, "bwrap")
    assert result.exit_code != 0
    assert (workspace / "shadow.txt").read_text() == ""


@pytest.mark.usefixtures("bwrap_works")
def test_tmp_is_private(workspace: Path, logs: Path) -> None:
    name = f"sisu-private-{uuid.uuid4().hex}"
    result = run(f"touch /tmp/{name} && test -f /tmp/{name}", workspace, logs, "bwrap")
    assert result.exit_code == 0
    assert not Path("/tmp", name).exists()


@pytest.mark.usefixtures("bwrap_works")
def test_the_command_has_no_capabilities(workspace: Path, logs: Path) -> None:
    result = run("grep CapEff /proc/self/status > caps.txt", workspace, logs, "bwrap")
    assert result.exit_code == 0
    assert (workspace / "caps.txt").read_text().split() == ["CapEff:", "0000000000000000"]


def live_processes_with(argument: str) -> list[int]:
    """Host pids whose command line has this argument (a zombie's command line is empty)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argument.encode() in argv:
            found.append(int(entry.name))
    return found


def test_timeout_kills_everything_the_command_started(
    isolation: Isolation, workspace: Path, logs: Path
) -> None:
    # A duration no other process on the machine sleeps for, to find ours by.
    duration = f"3600.{uuid.uuid4().int % 10**9:09d}"
    command = f"sleep {duration} & echo $! > background.pid; sleep {duration}"
    result = run(command, workspace, logs, isolation, timeout_seconds=2)
    assert result.timed_out
    assert result.exit_code is None
    assert (workspace / "background.pid").read_text().strip().isdigit()  # it did start
    assert live_processes_with(duration) == []


def test_what_an_exited_command_left_running_is_killed(
    isolation: Isolation, workspace: Path, logs: Path
) -> None:
    duration = f"3600.{uuid.uuid4().int % 10**9:09d}"
    result = run(f"sleep {duration} & exit 0", workspace, logs, isolation)
    assert result.exit_code == 0
    assert not result.timed_out
    assert live_processes_with(duration) == []


def test_output_is_capped_with_a_marker(isolation: Isolation, workspace: Path, logs: Path) -> None:
    cap = 64 * 1024
    command = "yes sisu-flood 2>/dev/null | head -c 5000000; echo done >&2"
    result = run(command, workspace, logs, isolation, max_output_bytes=cap)
    assert result.exit_code == 0
    written = (logs / "stdout.log").read_bytes()
    assert result.stdout.truncated
    assert cap < len(written) <= cap + 200
    assert written[:cap] == (b"sisu-flood\n" * (cap // 11 + 1))[:cap]
    assert written[cap:].startswith(b"\n[sisu: output truncated: 65536 bytes kept,")
    assert result.stdout.bytes == len(written)
    assert result.stdout.sha256 == hashlib.sha256(written).hexdigest()
    assert not result.stderr.truncated
    assert (logs / "stderr.log").read_text() == "done\n"


def test_logs_are_emptied_before_each_run(
    isolation: Isolation, workspace: Path, logs: Path
) -> None:
    run("echo a long first line; echo first error >&2", workspace, logs, isolation)
    run("echo second", workspace, logs, isolation)
    assert (logs / "stdout.log").read_text() == "second\n"
    assert (logs / "stderr.log").read_text() == ""


def test_environment_is_scrubbed_to_the_allowlist(
    isolation: Isolation, workspace: Path, logs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SISU_SANDBOX_LEAK_PROBE", "leaked")
    result = run("env > env.txt", workspace, logs, isolation, env={"ALLOWED_VAR": "a b=c"})
    assert result.exit_code == 0
    seen = dict(
        line.split("=", 1) for line in (workspace / "env.txt").read_text().splitlines() if line
    )
    assert seen["ALLOWED_VAR"] == "a b=c"
    assert "SISU_SANDBOX_LEAK_PROBE" not in seen
    assert set(seen) <= {"ALLOWED_VAR", "PATH", "HOME", "LANG", "TMPDIR", "PWD", "SHLVL", "_"}


def test_exit_code_output_files_and_tail(isolation: Isolation, workspace: Path, logs: Path) -> None:
    result = run("echo first; echo boom >&2; exit 7", workspace, logs, isolation)
    assert result.exit_code == 7
    assert not result.timed_out
    assert "first" in result.tail and "boom" in result.tail
    assert result.stdout.path == logs / "stdout.log"
    assert (logs / "stdout.log").read_bytes() == b"first\n"
    assert result.stdout.sha256 == hashlib.sha256(b"first\n").hexdigest()
    assert result.stderr.bytes == len(b"boom\n")


def test_a_signal_is_reported_as_sh_does(isolation: Isolation, workspace: Path, logs: Path) -> None:
    result = run("kill -9 $$", workspace, logs, isolation)
    assert result.exit_code == 128 + 9


def test_limits_bind_the_command(isolation: Isolation, workspace: Path, logs: Path) -> None:
    limits = Limits(memory_bytes=256 * 1024 * 1024, file_size_bytes=1024 * 1024)
    memory = run(
        "python3 -c 'bytearray(512 * 1024 * 1024)'", workspace, logs, isolation, limits=limits
    )
    assert memory.exit_code == 1
    size = run("head -c 2000000 /dev/zero > big", workspace, logs, isolation, limits=limits)
    assert size.exit_code != 0
    assert (workspace / "big").stat().st_size <= 1024 * 1024


def failing_bwrap(tmp_path: Path) -> str:
    """A stand-in for a bwrap on a machine without user namespaces: it says why, exits 1."""
    fake = tmp_path / "bwrap"
    fake.write_text(
        "#!/bin/sh\necho 'bwrap: No permissions to create a new namespace' >&2\nexit 1\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    return str(fake)


def test_a_sandbox_that_cannot_start_is_told_apart_from_a_failing_command(
    tmp_path: Path, workspace: Path, logs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sandbox_command, "find_bwrap", lambda: failing_bwrap(tmp_path))
    with pytest.raises(SandboxUnavailable) as raised:
        run("exit 1", workspace, logs, "bwrap")
    assert "No permissions to create a new namespace" in str(raised.value)
    assert probe("bwrap") == str(raised.value)
    copy = pickle.loads(pickle.dumps(raised.value))
    assert (type(copy), str(copy)) == (SandboxUnavailable, str(raised.value))


def test_probe_without_bwrap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox_command, "find_bwrap", lambda: None)
    assert "no bwrap found" in (probe("bwrap") or "")
    assert probe("none") is None


def work(workspace: Path, logs: Path, command: str | None, **constraints: object) -> Work:
    return Work(
        run_id="run-1",
        workspace=workspace,
        tasks=(),
        test_command=command,
        constraints=dict(constraints),
        logs=logs,
    )


@pytest.mark.usefixtures("bwrap_works")
def test_executor_success_outcome_and_artifacts(workspace: Path, logs: Path) -> None:
    (workspace / "test.sh").write_text("echo ok; echo $GREETING; echo warn >&2\n")
    executor = SandboxExecutor(cap_minutes=1)
    outcome = executor.perform(
        work(workspace, logs, "sh test.sh", timeoutSeconds=100_000, env={"GREETING": "hello"})
    )
    assert outcome["exitCode"] == 0
    assert outcome["command"] == "sh test.sh"
    assert outcome["timeoutSeconds"] == 60  # capped by the operator's minutes
    assert outcome["isolation"] == "bwrap"
    assert (logs / "stdout.log").read_text() == "ok\nhello\n"
    artifacts = {a["kind"]: a for a in outcome["artifacts"]}
    for kind in ("stdout", "stderr"):
        path = logs / f"{kind}.log"
        assert artifacts[kind]["uri"] == path.as_uri() == outcome[kind]["uri"]
        assert artifacts[kind]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert "warn" in outcome["tail"]


@pytest.mark.usefixtures("bwrap_works")
def test_executor_failure_and_timeout_raise_one_string_errors(workspace: Path, logs: Path) -> None:
    executor = SandboxExecutor(cap_minutes=1)
    with pytest.raises(CommandFailed) as failed:
        executor.perform(work(workspace, logs, "echo broken >&2; exit 3"))
    assert str(failed.value).startswith("exit 3: ")
    assert "broken" in str(failed.value)
    with pytest.raises(CommandTimeout) as timed_out:
        executor.perform(work(workspace, logs, "sleep 30", timeoutSeconds=1))
    for error in (failed.value, timed_out.value):
        copy = pickle.loads(pickle.dumps(error))
        assert (type(copy), copy.args) == (type(error), (str(error),))


def test_executor_with_isolation_none(workspace: Path, logs: Path) -> None:
    executor = SandboxExecutor(cap_minutes=1, isolation="none")
    outcome = executor.perform(work(workspace, logs, "echo hi > out.txt"))
    assert outcome["exitCode"] == 0
    assert outcome["isolation"] == "none"
    assert (workspace / "out.txt").read_text() == "hi\n"
