"""The `sandbox` executor: ExecuteST's outside work is the plan's test command, run in the
run's rebuilt workspace under bubblewrap; its output files are the step's artifacts."""

from __future__ import annotations

import math
from typing import Any

from sisu import metrics
from sisu.sandbox.command import (
    DEFAULT_MAX_OUTPUT_BYTES,
    CommandResult,
    Isolation,
    Limits,
    run_command,
    validate_env,
)
from sisu.workflow.steps.errors import CommandFailed, CommandTimeout, StepError
from sisu.workflow.steps.ports import Work

DEFAULT_TIMEOUT_SECONDS = 600.0


class InvalidCommandConstraints(StepError):
    """The intent's constraints for its command (timeoutSeconds, env) are not usable; the same
    intent would fail the same way again."""

    code = "invalid_constraints"


def command_timeout_seconds(
    constraints: dict[str, Any], cap_minutes: float, default: float = DEFAULT_TIMEOUT_SECONDS
) -> float:
    """constraints.timeoutSeconds (else `default`), never more than the operator's cap.
    Raises ValueError when it is not a positive number."""
    wanted = constraints.get("timeoutSeconds", default)
    if isinstance(wanted, bool) or not isinstance(wanted, int | float):
        raise ValueError("constraints.timeoutSeconds must be a number of seconds")
    if not math.isfinite(wanted) or wanted <= 0:
        raise ValueError("constraints.timeoutSeconds must be positive")
    return min(float(wanted), cap_minutes * 60.0)


class SandboxExecutor:
    """Runs `work.test_command` with `sh -c` in the workspace. Exit 0 succeeds with the output
    files as artifacts; another exit code raises CommandFailed, a timeout CommandTimeout, a
    sandbox that cannot start SandboxUnavailable. A command may run more than once (a worker
    killed mid-command runs it again after recovery): the sandbox keeps every attempt's
    effects inside its workspace, which is rebuilt before each."""

    name = "sandbox"
    uses_workspace = True

    def __init__(
        self,
        cap_minutes: float,
        *,
        isolation: Isolation = "bwrap",
        limits: Limits | None = None,
        max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
        default_timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        if cap_minutes <= 0:
            raise ValueError("cap_minutes must be positive")
        self.cap_minutes = cap_minutes
        self.isolation: Isolation = isolation
        self.limits = limits or Limits()
        self.max_output_bytes = max_output_bytes
        self.default_timeout_seconds = default_timeout_seconds

    def perform(self, work: Work) -> dict[str, Any]:
        command = work.test_command
        if not command or not command.strip():
            return {"command": None, "skipped": "the plan has no test command", "artifacts": []}
        try:
            timeout = command_timeout_seconds(
                work.constraints, self.cap_minutes, self.default_timeout_seconds
            )
            env = validate_env(work.constraints.get("env", {}))
        except ValueError as exc:
            raise InvalidCommandConstraints(str(exc)) from exc

        result = run_command(
            command,
            work.workspace,
            work.logs,
            timeout_seconds=timeout,
            env=env,
            limits=self.limits,
            isolation=self.isolation,
            max_output_bytes=self.max_output_bytes,
        )
        tail = result.tail.rstrip() or "(no output)"
        if result.timed_out:
            metrics.sandbox_command("timeout")
            raise CommandTimeout(
                f"timed out after {timeout:g} s and was killed with all it started: {tail}"
            )
        if result.exit_code != 0:
            metrics.sandbox_command("failed")
            raise CommandFailed(f"exit {result.exit_code}: {tail}")
        metrics.sandbox_command("succeeded")
        return outcome(result, timeout)


def outcome(result: CommandResult, timeout_seconds: float) -> dict[str, Any]:
    """What ExecuteST records for a command that succeeded."""
    return {
        "command": result.command,
        "isolation": result.isolation,
        "exitCode": result.exit_code,
        "durationMs": result.duration_ms,
        "timeoutSeconds": timeout_seconds,
        "stdout": result.stdout.as_json(),
        "stderr": result.stderr.as_json(),
        "tail": result.tail,
        "artifacts": [
            {"kind": kind, "uri": file.path.as_uri(), "sha256": file.sha256}
            for kind, file in (("stdout", result.stdout), ("stderr", result.stderr))
        ],
    }
