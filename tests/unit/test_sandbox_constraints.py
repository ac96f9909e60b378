"""The sandbox's pure parts: which env and timeout a command may be given, how output is capped
and tailed, and an executor with nothing to run."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from sisu.sandbox import (
    InvalidCommandConstraints,
    Limits,
    SandboxExecutor,
    command_timeout_seconds,
    validate_env,
)
from sisu.sandbox.output import CappedLog, Tail
from sisu.workflow.steps.ports import Work


def test_env_names_must_be_shell_names() -> None:
    assert validate_env({"A_1": "x", "_b": ""}) == {"A_1": "x", "_b": ""}
    for bad in ({"1A": "x"}, {"A-B": "x"}, {"": "x"}, {"A B": "x"}, {"A=B": "x"}):
        with pytest.raises(ValueError, match="not a shell variable name"):
            validate_env(bad)


def test_env_values_must_be_strings_without_nul() -> None:
    for bad in ({"A": 1}, {"A": None}, {"A": "x\0y"}):
        with pytest.raises(ValueError, match="string"):
            validate_env(bad)
    with pytest.raises(ValueError, match="object"):
        validate_env(["A=x"])
    with pytest.raises(ValueError, match="bytes; at most"):
        validate_env({"A": "x" * 70_000})


def test_timeout_defaults_and_is_capped() -> None:
    assert command_timeout_seconds({}, cap_minutes=60) == 600
    assert command_timeout_seconds({}, cap_minutes=5) == 300
    assert command_timeout_seconds({"timeoutSeconds": 2.5}, cap_minutes=1) == 2.5
    assert command_timeout_seconds({"timeoutSeconds": 10_000}, cap_minutes=1) == 60
    for bad in (0, -1, True, "10", None, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="timeoutSeconds"):
            command_timeout_seconds({"timeoutSeconds": bad}, cap_minutes=1)


def test_cpu_limit_follows_the_timeout_unless_given() -> None:
    assert Limits().rlimits(10)["CPU"] >= 10
    assert Limits(cpu_seconds=3).rlimits(10)["CPU"] == 3
    assert "NPROC" not in Limits(processes=None).rlimits(10)


def test_capped_log_keeps_the_cap_and_appends_a_marker(tmp_path: Path) -> None:
    path = tmp_path / "out.log"
    path.write_text("left over from an earlier run\n")
    log = CappedLog(path, cap=10)
    log.write(b"0123456")
    log.write(b"789abcdef")
    result = log.close()
    written = path.read_bytes()
    assert written == b"0123456789\n[sisu: output truncated: 10 bytes kept, 6 more dropped]\n"
    assert (result.bytes, result.truncated) == (len(written), True)
    assert result.sha256 == hashlib.sha256(written).hexdigest()


def test_capped_log_under_the_cap_is_untouched(tmp_path: Path) -> None:
    log = CappedLog(tmp_path / "out.log", cap=10)
    log.write(b"0123456789")
    result = log.close()
    assert (tmp_path / "out.log").read_bytes() == b"0123456789"
    assert not result.truncated


def test_tail_keeps_the_last_bytes() -> None:
    tail = Tail(size=8)
    tail.add(b"abc")
    tail.add(b"defghijklmnop")
    assert tail.text() == "ijklmnop"
    tail.add(b"\xff!")
    assert tail.text() == "klmnop\ufffd!"


def work(tmp_path: Path, command: str | None, **constraints: object) -> Work:
    return Work(
        run_id="run-1",
        workspace=tmp_path / "missing-workspace",
        tasks=(),
        test_command=command,
        constraints=dict(constraints),
        logs=tmp_path / "logs",
    )


def test_no_command_succeeds_and_says_so(tmp_path: Path) -> None:
    executor = SandboxExecutor(cap_minutes=1)
    for command in (None, "", "   "):
        outcome = executor.perform(work(tmp_path, command))
        assert outcome == {
            "command": None,
            "skipped": "the plan has no test command",
            "artifacts": [],
        }
    assert not (tmp_path / "logs").exists()


def test_bad_constraints_fail_before_anything_runs(tmp_path: Path) -> None:
    executor = SandboxExecutor(cap_minutes=1)
    with pytest.raises(InvalidCommandConstraints, match="timeoutSeconds"):
        executor.perform(work(tmp_path, "true", timeoutSeconds="soon"))
    with pytest.raises(InvalidCommandConstraints, match="shell variable name"):
        executor.perform(work(tmp_path, "true", env={"NOT-A-NAME": "x"}))
    assert not (tmp_path / "logs").exists()
