"""Output conventions: data to stdout, everything else to stderr; no colour when not a terminal
or when NO_COLOR is set; errors as one line (and as the JSON envelope under --json)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from sisu.contracts.base import Contract
    from sisu.errors import SisuError


@dataclass
class _State:
    verbose: bool = False
    json_mode: bool = False


state = _State()


def json_option(help: str = "Print the result as JSON on stdout.") -> Any:
    """The `--json` flag of every command that prints data: the command calls `use_json` with
    it first, then prints its model with `emit`."""
    return typer.Option(False, "--json", help=help)


JSON = json_option()


@cache
def err_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


@cache
def out_console() -> Console:
    from rich.console import Console

    # Piped output is read by people too (logs, CI): rich's 80-column default for a
    # non-terminal squeezes run tables, so give it room unless COLUMNS says otherwise.
    width = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 140
    return Console(highlight=False, soft_wrap=True, width=width)


def use_json(flag: bool) -> bool:
    """Commands with --json call this first, so that errors are printed as JSON too."""
    state.json_mode = flag
    return flag


def interactive() -> bool:
    """Progress displays only on a terminal (stderr is where they draw)."""
    return sys.stderr.isatty() and not state.json_mode


def data(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


def emit(model: Contract) -> None:
    data(model.to_json())


def emit_obj(obj: Any) -> None:
    data(json.dumps(obj, default=str))


def info(message: str) -> None:
    err_console().print(message)


def logs_json() -> bool:
    """Whether this process writes its log as JSON lines (`--log-format json`): then its own
    error lines are log records too."""
    from sisu import logs

    return logs.active_format() == "json"


def error(exc: SisuError) -> None:
    if state.json_mode:
        emit_obj(exc.envelope())
    if logs_json():
        import logging

        # Called while the failure is being handled: under -v its traceback is a field.
        logging.getLogger("sisu").error(
            exc.message,
            extra={"code": exc.code},
            exc_info=sys.exc_info() if state.verbose else None,
        )
        return
    sys.stderr.write(f"sisu: error[{exc.code}]: {exc.message}\n")


@contextmanager
def progress(title: str) -> Iterator[Callable[[str], None]]:
    """A step logger: a live status line plus one line per step on a terminal, silent elsewhere."""
    if not interactive():
        yield lambda _msg: None
        return
    with err_console().status(title) as status:

        def step(msg: str) -> None:
            err_console().print(f"  {msg}")
            status.update(f"{title}: {msg}")

        yield step


@contextmanager
def phase_bars() -> Iterator[Callable[[str, int, int], None]]:
    """Progress bars for a long drill's phases, `progress(phase, done, total)`: one bar per phase
    on a terminal (gone when it ends), silent elsewhere."""
    if not interactive():
        yield lambda _phase, _done, _total: None
        return
    from rich.progress import Progress, TaskID

    with Progress(console=err_console(), transient=True) as bar:
        tasks: dict[str, TaskID] = {}

        def update(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total)
            bar.update(tasks[phase], completed=done)

        yield update
