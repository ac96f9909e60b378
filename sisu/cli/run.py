"""`sisu run`: read and watch runs."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import typer

from sisu.cli import _output
from sisu.cli._output import JSON

if TYPE_CHECKING:
    from sisu.contracts.base import Contract
    from sisu.service.backend import Backend

app = typer.Typer(
    help="Show, list and watch runs; answer, retry, cancel and resume them; print their "
    "compiler calls, patch and command output.",
    no_args_is_help=True,
)


@app.command()
def show(
    run_id: str = typer.Argument(..., help="Run id (= intent id)."),
    json: bool = JSON,
) -> None:
    """Show one run: status, steps with attempts, artifacts (the RunView)."""
    from sisu.cli import _render
    from sisu.cli._backend import backend
    from sisu.service import views

    _output.use_json(json)
    with backend() as b:
        view = views.get_run(b, run_id)
    if json:
        _output.emit(view)
    else:
        _output.out_console().print(_render.run_view(view))


@app.command()
def calls(
    run_id: str = typer.Argument(..., help="Run id (= intent id)."),
    json: bool = JSON,
) -> None:
    """List the run's compiler calls, oldest first.

    Each with its compiler and model, the step attempt, tokens, latency and error; with
    --json, each call's request and response too (what GET /runs/{id}/calls returns)."""
    from sisu.cli import _render
    from sisu.cli._backend import backend
    from sisu.service import views

    _output.use_json(json)
    with backend() as b:
        found = views.list_calls(b, run_id)
    if json:
        _output.data("[" + ",".join(c.to_json() for c in found) + "]")
    else:
        _output.out_console().print(_render.call_list(found))


LIMIT = typer.Option(50, "--limit", help="At most this many on the page (1-1000).")
AFTER = typer.Option(
    None, "--after", metavar="CURSOR", help="The page after this cursor: a previous page's `next`."
)


def _more_hint(command: str, next_cursor: str | None, *flags: str) -> None:
    """On stderr, the command that shows the next page, when there is one."""
    if next_cursor is not None:
        shown = " ".join(["sisu", command, *flags, "--after", next_cursor])
        _output.info(f"more: {shown}")


@app.command(name="list")
def list_(
    status: str = typer.Option(None, "--status", help="Only runs with this status."),
    limit: int = LIMIT,
    after: str = AFTER,
    json: bool = JSON,
) -> None:
    """List runs, newest first, a page at a time (--json: {items, next}, as GET /runs)."""
    from sisu.cli import _render
    from sisu.cli._backend import backend
    from sisu.service import views

    _output.use_json(json)
    with backend() as b:
        page = views.list_runs(b, status=status, limit=limit, after=after)
    if json:
        _output.emit(page)
        return
    _output.out_console().print(_render.run_list(page.items))
    if not page.items:
        from sisu.cli._backend import empty

        if after:
            empty("no more runs")
        else:
            empty(f"no run is {status}" if status else "no runs yet")
    flags = [*(["--status", status] if status else []), "--limit", str(limit)]
    _more_hint("run list", page.next, *flags)


@app.command()
def watch(
    run_id: str = typer.Argument(..., help="Run id (= intent id)."),
    timeout: float = typer.Option(None, "--timeout", min=0, help="Give up after N seconds."),
) -> None:
    """Watch a run live until it is terminal or waits for input.

    Exit 0 succeeded, 10 waiting_input, 1 failed/canceled/retries_exceeded, 124 on --timeout."""
    from sisu.cli import _render, _wait
    from sisu.cli._backend import backend

    with backend() as b:
        if _output.interactive():
            from rich.live import Live

            from sisu.cli._settings import settings

            home = settings().home
            with Live(console=_output.err_console(), auto_refresh=False) as live:
                final = _wait.settle(
                    b,
                    run_id,
                    timeout=timeout,
                    on_view=lambda v: live.update(
                        _render.run_view_with_output(v, home), refresh=True
                    ),
                )
        else:
            final = _wait.settle(b, run_id, timeout=timeout)
            _output.out_console().print(_render.run_view(final))
    raise typer.Exit(_render.exit_code_for(final.status))


@app.command()
def event(
    run_id: str = typer.Argument(..., help="A run waiting for input."),
    payload: str = typer.Option(
        None, "--payload", help='The answer: JSON or @file, e.g. \'{"answer": "42"}\'.'
    ),
    approve: bool = typer.Option(
        False, "--approve", help="Approve the change a run waits on at its approval gate."
    ),
    reject: bool = typer.Option(
        False, "--reject", help="Reject the change at the approval gate: the run is canceled."
    ),
    reason: str = typer.Option(None, "--reason", help="Why, with --approve or --reject."),
    type_: str = typer.Option(
        None, "--type", help="Event type: input (an answer) or approval; implied by the flags."
    ),
    idempotency_key: str = typer.Option(
        None, "--idempotency-key", help="Deliveries with the same key are applied once."
    ),
    json: bool = JSON,
) -> None:
    """Answer a run that waits for a human (status waiting_input).

    --payload answers a question; --approve or --reject [--reason R] an approval gate."""
    from sisu.cli._backend import backend
    from sisu.cli._input import parse_json_arg, validate
    from sisu.contracts.runs import EventRequest
    from sisu.errors import ValidationFailed
    from sisu.service import human

    _output.use_json(json)
    if sum((payload is not None, approve, reject)) != 1:
        raise ValidationFailed(
            "give exactly one of --payload, --approve or --reject",
            details=[
                {"field": "payload", "type": "one_of", "options": ["payload", "approve", "reject"]}
            ],
        )
    if payload is not None:
        body = parse_json_arg(payload, "payload")
    else:
        body = {"approved": approve, **({"reason": reason} if reason is not None else {})}
    request = validate(
        EventRequest,
        {
            "type": type_ or ("input" if payload is not None else "approval"),
            "payload": body,
            "idempotency_key": idempotency_key,
        },
    )
    with backend() as b:
        accepted = human.send_event(b, run_id, request)
    if json:
        _output.emit(accepted)
    else:
        _output.info(
            f"event {'already delivered' if accepted.duplicate else 'accepted'} for run {run_id}"
        )


@app.command()
def patch(
    run_id: str = typer.Argument(..., help="Run id (= intent id)."),
) -> None:
    """Print the run's change as a unified diff against its intent's commit.

    It applies with `git apply` on the repository at that commit (GET /runs/{id}/patch)."""
    from sisu.cli._backend import backend
    from sisu.service import views

    with backend() as b:
        diff = views.run_patch(b, run_id)
    if diff:
        sys.stdout.write(diff)  # exactly the diff: `sisu run patch ID | git apply`
    else:
        _output.info(f"run {run_id} changed nothing")


@app.command()
def logs(
    run_id: str = typer.Argument(..., help="Run id (= intent id)."),
    follow: bool = typer.Option(
        False, "--follow", "-f", help="Keep printing new output until the run is settled."
    ),
) -> None:
    """Print the output of the run's command (--executor sandbox).

    Its stdout on stdout, its stderr on stderr, as the worker wrote them under
    $SISU_HOME/logs/runs/ID (capped, with a marker where they were cut). With -f, follow them
    while the run goes on."""
    import time

    from sisu.cli._settings import settings
    from sisu.service import command_logs

    home = settings().home
    sinks = {"stdout": sys.stdout.buffer, "stderr": sys.stderr.buffer}
    if not follow:
        for stream, path in command_logs.existing(home, run_id).items():
            sinks[stream].write(path.read_bytes())
            sinks[stream].flush()
        return

    from sisu.cli._backend import backend
    from sisu.contracts.runs import TERMINAL_STATUSES
    from sisu.service import views

    offsets = dict.fromkeys(command_logs.STREAMS, 0)
    with backend() as b:
        while True:
            # Read the status first: output written before the run settled is printed below.
            settled = views.get_run(b, run_id).status in {*TERMINAL_STATUSES, "waiting_input"}
            for stream, path in command_logs.paths(home, run_id).items():
                try:
                    with path.open("rb") as f:
                        if f.seek(0, 2) < offsets[stream]:
                            offsets[stream] = 0  # a new attempt truncated the file
                        f.seek(offsets[stream])
                        chunk = f.read()
                except FileNotFoundError:
                    continue
                offsets[stream] += len(chunk)
                sinks[stream].write(chunk)
                sinks[stream].flush()
            if settled:
                return
            time.sleep(0.25)


@app.command()
def inbox(limit: int = LIMIT, after: str = AFTER, json: bool = JSON) -> None:
    """List the runs waiting for a human, longest waiting first, a page at a time.

    Each with its question, how long it has waited and how long is left (--json:
    {items, next}, as GET /inbox)."""
    from sisu.cli._backend import backend
    from sisu.service import human

    _output.use_json(json)
    with backend() as b:
        page = human.inbox(b, limit=limit, after=after)
    if json:
        _output.emit(page)
        return
    if not page.items:
        from sisu.cli._backend import empty

        empty("no more runs wait for input" if after else "inbox is empty: no run waits for input")
        return
    from rich.table import Table

    table = Table(show_edge=False, pad_edge=False)
    for col in ("run", "question", "waiting", "time left"):
        table.add_column(col)
    for i in page.items:
        table.add_row(i.run_id, i.question, f"{i.age_seconds:.0f}s", f"{i.time_left_seconds:.0f}s")
    _output.out_console().print(table)
    _more_hint("run inbox", page.next, "--limit", str(limit))
    _output.info('answer with: sisu run event RUN_ID --payload \'{"answer": "..."}\'')


def _bulk(
    action: str,
    act: Callable[[Backend, str], Contract],
    run_id: str | None,
    status: str | None,
    all_: bool,
    yes: bool,
    json: bool,
) -> None:
    """`act` on one run by id, or on every run with --status S --all after a confirmation;
    `action` names it in messages."""
    from sisu.errors import ValidationFailed

    _output.use_json(json)
    if run_id is not None:
        if all_ or status:
            raise ValidationFailed(f"give either a run id or --status S --all to {action}")
        _bulk_one(action, act, run_id, json)
    elif all_ and status:
        _bulk_many(action, act, status, yes, json)
    else:
        raise ValidationFailed(f"give a run id, or --status S --all to {action} many runs")


def _bulk_one(
    action: str, act: Callable[[Backend, str], Contract], run_id: str, json: bool
) -> None:
    from sisu.cli._backend import backend

    with backend() as b:
        result = act(b, run_id)
    if json:
        _output.emit(result)
    else:
        _output.info(f"{action}: run {run_id} accepted")


def _bulk_many(
    action: str, act: Callable[[Backend, str], Contract], status: str, yes: bool, json: bool
) -> None:
    """Each run's outcome is reported on its own; one failure does not stop the rest, and
    makes the command exit 1."""
    from sisu.cli._backend import backend, empty
    from sisu.errors import SisuError
    from sisu.service import repair

    with backend() as b:
        ids = repair.run_ids_with_status(b, status)
        if not ids:
            empty(f"no run is {status}")
        elif not yes and not typer.confirm(f"{action} {len(ids)} run(s) that are {status}?"):
            raise typer.Exit(1)
        outcomes: list[dict[str, Any]] = []
        for rid in ids:
            try:
                act(b, rid)
                outcomes.append({"runId": rid, "ok": True, "error": None})
            except SisuError as exc:
                outcomes.append({"runId": rid, "ok": False, "error": exc.envelope()})
    if json:
        _output.emit_obj({"matched": len(ids), "results": outcomes})
    else:
        for o in outcomes:
            _output.data(f"{o['runId']} {'ok' if o['ok'] else o['error']['error']}")
        _output.info(f"{action}: {sum(o['ok'] for o in outcomes)} of {len(ids)} done")
    if not all(o["ok"] for o in outcomes):
        raise typer.Exit(1)


RUN_ID = typer.Argument(None, help="The run (omit with --status S --all).")
STATUS = typer.Option(None, "--status", help="With --all: every run with this status.")
ALL = typer.Option(False, "--all", help="Act on every run with --status.")
YES = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation.")


@app.command()
def retry(
    run_id: str = RUN_ID, status: str = STATUS, all_: bool = ALL, yes: bool = YES, json: bool = JSON
) -> None:
    """Repair a run that is retries_exceeded or failed: resume it at its failed step.

    The same workflow goes on from the failed step; completed steps are not executed again."""
    from sisu.service import repair

    _bulk("retry", repair.retry_run, run_id, status, all_, yes, json)


@app.command()
def cancel(
    run_id: str = RUN_ID, status: str = STATUS, all_: bool = ALL, yes: bool = YES, json: bool = JSON
) -> None:
    """Cancel a queued, running or waiting run.

    Cancel stops the run at its next step boundary; it is not a rollback. A step already
    running finishes its work, so a run canceled during ExecuteST may still deliver its effect
    to the outside system (once: its idempotency key still holds)."""
    from sisu.service import repair

    _bulk("cancel", repair.cancel_run, run_id, status, all_, yes, json)


@app.command()
def resume(
    run_id: str = typer.Argument(..., help="A run stranded on an app version no worker serves."),
    app_version: str = typer.Option(..., "--app-version", help="The app version to move it to."),
    json: bool = JSON,
) -> None:
    """Move a stranded run to another app version and let it continue there.

    Completed steps are kept; the rest runs on workers of the new version, whose code must be
    compatible with the old one's checkpoints."""
    from sisu.cli._backend import backend
    from sisu.service import repair

    _output.use_json(json)
    _output.info(
        f"warning: run {run_id} continues on app version {app_version}; its code must be "
        "compatible with the steps already checkpointed"
    )
    with backend() as b:
        result = repair.resume_run(b, run_id, app_version)
    if json:
        _output.emit_obj(result)
    else:
        _output.info(f"run {run_id} moved to {app_version}, resuming at step {result['fromStep']}")
