"""`--log-format` of the long-running commands (`sisu worker`, `sisu serve`) and the call that
routes their logs through `sisu.logs` before they do anything else."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from sisu.config import Settings


def log_format_option() -> Any:
    return typer.Option(
        None,
        "--log-format",
        help="How log lines are written to stderr (env SISU_LOG_FORMAT, default text): text "
        "(timestamp, level, logger, message, key=value context) or json (one object per line: "
        "ts, level, logger, message, run_id, step, code, executor_id when known). Tracebacks "
        "only with `sisu -v`.",
        show_default=False,
    )


def setup_logs(s: Settings, flag: str | None) -> str:
    """Validate the format (flag > SISU_LOG_FORMAT > text), then send every log record of this
    process through one handler that masks the secrets the settings and environment hold."""
    from sisu import logs
    from sisu.cli._output import state
    from sisu.errors import ValidationFailed

    chosen = (flag or s.log_format).lower()
    if chosen not in logs.FORMATS:
        raise ValidationFailed(
            f"unknown log format {chosen!r}: use --log-format text or json (or SISU_LOG_FORMAT)",
            details=[{"field": "log_format", "allowed": list(logs.FORMATS)}],
        )
    logs.setup(chosen, verbose=state.verbose, secrets=logs.known_secrets(s))
    return chosen
