"""Human renderings of run state (rich). `--json` output never comes through here."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sisu import names

if TYPE_CHECKING:
    from pathlib import Path

    from rich.console import RenderableType

    from sisu.contracts.runs import CompilerCall, RunSummary, RunView

STATUS_STYLE = {
    "queued": "yellow",
    "running": "cyan",
    "waiting_input": "magenta",
    "succeeded": "green",
    "failed": "red",
    "canceled": "dim",
    "retries_exceeded": "red",
}
STEP_IDS = names.STEP_IDS

# Exit codes of commands that wait for a run (`run watch`, `intent run --wait`, `demo`).
EXIT_SUCCEEDED = 0
EXIT_NOT_SUCCEEDED = 1
EXIT_WAITING_INPUT = 10


def exit_code_for(status: str) -> int:
    if status == "succeeded":
        return EXIT_SUCCEEDED
    if status == "waiting_input":
        return EXIT_WAITING_INPUT
    return EXIT_NOT_SUCCEEDED


def status_text(status: str) -> str:
    return f"[{STATUS_STYLE.get(status, 'white')}]{status}[/]"


def _time(value: datetime | None) -> str:
    return value.strftime("%H:%M:%S.%f")[:-3] if value else "-"


def _short(value: Any, width: int = 60) -> str:
    text = json.dumps(value, separators=(",", ":")) if value is not None else "-"
    return text if len(text) <= width else text[: width - 1] + "…"


def run_view(view: RunView) -> RenderableType:
    from rich.console import Group
    from rich.table import Table

    header = (
        f"run [bold]{view.run_id}[/]  {status_text(view.status)}"
        + (f"  next: [bold]{view.next_action}[/]" if view.next_action else "")
        + (f"  trace: {view.trace_id}" if view.trace_id else "")
        + (f"  retries: {view.retry_count}" if view.retry_count else "")
    )
    table = Table(show_edge=False, pad_edge=False)
    for col in ("step", "attempt", "phase", "started", "finished", "output / error"):
        table.add_column(col)
    seen = set()
    for s in view.steps:
        seen.add(s.step_id)
        phase = f"[{'green' if s.phase == 'succeeded' else 'red'}]{s.phase}[/]"
        detail = _short(s.error if s.error is not None else s.output)
        table.add_row(
            s.step_id, str(s.attempt), phase, _time(s.started_at), _time(s.finished_at), detail
        )
    current = view.status == "running"
    for step_id in STEP_IDS:
        if step_id not in seen:
            label = "[cyan]running…[/]" if current else "[dim]pending[/]"
            table.add_row(step_id, "-", label, "-", "-", "")
            current = False
    parts: list[RenderableType] = [header, table]
    if view.compiler is not None:
        c = view.compiler
        tokens = (
            f", tokens {c.input_tokens or 0} in / {c.output_tokens or 0} out"
            if c.input_tokens is not None or c.output_tokens is not None
            else ""
        )
        parts.append(
            f"compiler: {c.name}" + (f" ({c.model})" if c.model else "")
            + f", {c.requests} call(s){tokens}   (sisu run calls {view.run_id})"
        )  # fmt: skip
    if view.artifacts:
        parts.append(
            "artifacts: "
            + ", ".join(f"{a.step_id}/{a.kind}#{a.idx} {a.sha256[:12]}" for a in view.artifacts)
        )
    return Group(*parts)


def call_list(calls: list[CompilerCall]) -> RenderableType:
    from rich.table import Table

    table = Table(show_edge=False, pad_edge=False)
    for col in ("#", "step", "attempt", "compiler", "model", "tokens in/out", "ms", "error", "at"):
        table.add_column(col)
    for c in calls:
        tokens = (
            "-"
            if c.input_tokens is None and c.output_tokens is None
            else f"{c.input_tokens or 0}/{c.output_tokens or 0}"
        )
        error = c.error.get("code", "error") if isinstance(c.error, dict) else _short(c.error, 30)
        table.add_row(
            str(c.id), c.step_id, str(c.attempt), c.compiler, c.model or "-", tokens,
            "-" if c.latency_ms is None else str(c.latency_ms),
            "-" if c.error is None else f"[red]{error}[/]", _time(c.created_at),
        )  # fmt: skip
    return table


def run_list(runs: list[RunSummary]) -> RenderableType:
    from rich.table import Table

    table = Table(show_edge=False, pad_edge=False)
    for col in ("run", "status", "last step", "next", "trace", "created"):
        table.add_column(col)
    for r in runs:
        table.add_row(
            r.run_id,
            status_text(r.status),
            r.last_step or "-",
            r.next_action or "-",
            r.trace_id or "-",
            r.created_at.isoformat(timespec="seconds"),
        )
    return table


def run_view_with_output(view: RunView, home: Path, lines: int = 12) -> RenderableType:
    """The run view, and under it the live tail of its command's output when it has one."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.text import Text

    from sisu.service import command_logs

    stdout = command_logs.paths(home, view.run_id)["stdout"]
    text = command_logs.tail(stdout, lines)
    if not text:
        return run_view(view)
    return Group(run_view(view), Panel(Text(text), title="command output (stdout)"))
