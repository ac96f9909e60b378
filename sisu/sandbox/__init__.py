"""Commands run in a bubblewrap sandbox: `run_command` and `probe` (sandbox.command), and the
`sandbox` executor that runs a plan's test command through them (sandbox.executor)."""

from sisu.sandbox.command import (
    DEFAULT_MAX_OUTPUT_BYTES,
    ISOLATIONS,
    CommandResult,
    Isolation,
    Limits,
    SandboxUnavailable,
    probe,
    run_command,
    validate_env,
)
from sisu.sandbox.executor import (
    DEFAULT_TIMEOUT_SECONDS,
    InvalidCommandConstraints,
    SandboxExecutor,
    command_timeout_seconds,
)
from sisu.sandbox.output import OutputFile

__all__ = [
    "DEFAULT_MAX_OUTPUT_BYTES",
    "DEFAULT_TIMEOUT_SECONDS",
    "ISOLATIONS",
    "CommandResult",
    "InvalidCommandConstraints",
    "Isolation",
    "Limits",
    "OutputFile",
    "SandboxExecutor",
    "SandboxUnavailable",
    "command_timeout_seconds",
    "probe",
    "run_command",
    "validate_env",
]
