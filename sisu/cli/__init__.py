"""The `sisu` command: the Typer app, its groups, and the one error handler.

Kept light on purpose: `sisu --help` must not import dbos, fastapi or psycopg; each command
imports what it needs when it runs."""

from __future__ import annotations

import sys
import traceback
from typing import Any

import typer

from sisu import __version__
from sisu.cli import (
    _output,
    audit,
    bench,
    chaos,
    crashdemo,
    db,
    demo,
    doctor,
    gc,
    intent,
    policy,
    queue,
    run,
    serve,
    top,
    worker,
    workers,
)
from sisu.cli._compat import NoSuchOption, UsageProblem, reflow_help_paragraphs
from sisu.errors import SisuError

app = typer.Typer(
    name="sisu",
    help="sisu: a durable intent engine. Runs intents as durable DBOS workflows on PostgreSQL.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    add_completion=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        _output.data(f"sisu {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    verbose: bool = typer.Option(
        False,
        "--verbose",
        "-v",
        help="Show tracebacks and debug detail on errors (before or after the command).",
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    _output.state.verbose = verbose


app.command(name="demo")(demo.demo)
app.add_typer(intent.app, name="intent")
app.add_typer(run.app, name="run")
app.command(name="worker")(worker.worker)
app.add_typer(workers.app, name="workers")
app.command(name="serve")(serve.serve)
app.add_typer(queue.app, name="queue")
app.add_typer(db.app, name="db")
app.command(name="crashdemo")(crashdemo.crashdemo)
app.command(name="chaos")(chaos.chaos)
app.command(name="audit")(audit.audit)
app.command(name="doctor")(doctor.doctor)
app.command(name="bench")(bench.bench)
app.command(name="gc")(gc.gc)
app.command(name="top")(top.top)
app.add_typer(policy.app, name="policy")


def _looked_up_in_the_database(exc: SisuError) -> bool:
    """A run or intent the database does not hold (not a file that is not there)."""
    from sisu.errors import NotFound

    details = exc.details if isinstance(exc.details, dict) else {}
    return (
        isinstance(exc, NotFound)
        and bool({"runId", "intentId"} & set(details))
        and "looked" not in details
        and not _output.logs_json()
    )


def _asks_for_help(args: list[str]) -> bool:
    """Whether this invocation prints help (and so pays for typer's help renderer)."""
    groups = {g.name for g in app.registered_groups}
    return not args or "-h" in args or "--help" in args or (len(args) == 1 and args[0] in groups)


VERBOSE_FLAGS = ("-v", "--verbose")


def _verbose_moved_first(args: list[str], problem: UsageProblem) -> list[str] | None:
    """`sisu run show ID -v`: click reads the root's options only before the command, so a
    `-v` after it is "no such option". The same arguments with it moved first, or None when
    the problem is another one. (`sisu audit -v` is audit's own option and never gets here.)"""
    if not (isinstance(problem, NoSuchOption) and problem.option_name in VERBOSE_FLAGS):
        return None
    end = args.index("--") if "--" in args else len(args)  # after `--`, -v is an argument
    return ["--verbose", *(a for a in args[:end] if a not in VERBOSE_FLAGS), *args[end:]]


def _invoke(args: list[str]) -> Any:
    try:
        return app(args=args, standalone_mode=False)
    except UsageProblem as problem:
        # Refused while parsing, before any command ran (the root's callback only notes -v).
        moved = _verbose_moved_first(args, problem)
        if moved is None:
            raise
    # Outside the except block: a traceback shown by -v is the command's own, not chained.
    return app(args=moved, standalone_mode=False)


def main() -> None:
    """Console-script entry point: maps every failure to a clean message and an exit code."""
    args = sys.argv[1:]
    if _asks_for_help(args):
        reflow_help_paragraphs()
    try:
        code = _invoke(args)
    except SisuError as exc:
        _output.error(exc)
        if _looked_up_in_the_database(exc):
            from sisu.cli._backend import empty

            empty()  # an id unknown here may well be known to the database meant
        if _output.state.verbose and not _output.logs_json():
            traceback.print_exc()
        sys.exit(exc.exit_code)
    except UsageProblem as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        sys.stderr.write("aborted\n")
        sys.exit(130)
    except Exception as exc:
        if _output.state.verbose and not _output.logs_json():
            traceback.print_exc()
        # The same one line, and under --json the same envelope on stdout, as a known error.
        first_line = next(iter(str(exc).splitlines()), "")
        unexpected = SisuError(f"{type(exc).__name__}: {first_line} (run with -v for details)")
        _output.error(unexpected)
        sys.exit(unexpected.exit_code)
    sys.exit(code if isinstance(code, int) else 0)
