"""`sisu intent`: create intents and run them — straight on the database, no HTTP server."""

from __future__ import annotations

from typing import Any

import typer

from sisu.cli import _output
from sisu.cli._input import integer_or_text, parse_json_arg, read_intent_file, validate
from sisu.cli._output import JSON

app = typer.Typer(help="Create intents and start their runs.", no_args_is_help=True)


@app.command()
def create(
    file: str = typer.Option(
        None,
        "--file",
        metavar="FILE",
        help="Submit an intent file (- for stdin): one JSON object shaped like the "
        "POST /intents body (goal, inputs, constraints, connectors, repo, ref), e.g. "
        "examples/intents/ask.json. A flag given beside it replaces that field of the file "
        "whole (no merging).",
    ),
    goal: str = typer.Option(
        None, "--goal", help="What the intent should achieve (required without --file)."
    ),
    inputs: str = typer.Option(
        None, "--inputs", help="Inputs: a JSON object, or @file holding one."
    ),
    constraints: str = typer.Option(
        None, "--constraints", help="Constraints: a JSON object, or @file holding one."
    ),
    repo: str = typer.Option(
        None,
        "--repo",
        help="A local git repository the run works on: its workspace is a checkout of it, and "
        "`sisu run patch` gives the change as a diff. The repository itself is never modified.",
    ),
    ref: str = typer.Option(
        None,
        "--ref",
        help="With --repo: the branch, tag or commit to work from (default HEAD), pinned to its "
        "commit now.",
    ),
    idempotency_key: str = typer.Option(
        None,
        "--idempotency-key",
        help="Create at most one intent for this key (1-255 visible ASCII characters): the "
        "same key and request again print the same id; another request with it exits 5 "
        "(idempotency_conflict).",
    ),
    json: bool = JSON,
) -> None:
    """Create an intent from flags or from an intent file, and print its id.

    With --json it prints {intentId}. Nothing is written unless the whole intent is valid."""
    from sisu.cli._backend import backend
    from sisu.contracts.runs import IntentCreate
    from sisu.errors import ValidationFailed
    from sisu.service import intents

    _output.use_json(json)
    body: dict[str, Any] = read_intent_file(file) if file is not None else {}
    if file is None and goal is None:
        raise ValidationFailed(
            "give --goal (with --inputs, --constraints ...) or --file with an intent file",
            details=[{"field": "goal", "type": "missing"}],
        )
    # A flag replaces its field of the file, under the field's wire name.
    flags = {"goal": goal, "repo": repo, "ref": ref}
    body.update({key: value for key, value in flags.items() if value is not None})
    if inputs is not None or file is None:
        body["inputs"] = parse_json_arg(inputs, "inputs")
    if constraints is not None or file is None:
        body["constraints"] = parse_json_arg(constraints, "constraints")
    request = validate(IntentCreate, body)
    with backend() as b:
        created, replayed = intents.create_intent_once(b, request, idempotency_key=idempotency_key)
    if replayed:
        _output.info(f"intent {created.intent_id} was already created with this idempotency key")
    if json:
        _output.emit(created)
    else:
        _output.data(created.intent_id)


@app.command()
def run(
    intent_id: str = typer.Argument(..., help="The intent to run."),
    trace_id: str = typer.Option(None, "--trace-id", help="A trace id to stamp on the run."),
    lane: str = typer.Option(
        None, "--lane", help="interactive or batch (default batch); sets the default priority."
    ),
    priority: str = typer.Option(
        None, "--priority", help="1-1000, lower runs sooner (default: 10 interactive, 100 batch)."
    ),
    dedupe_id: str = typer.Option(
        None,
        "--dedupe-id",
        help="Deduplication id: while a run holding it is queued or running, another trigger "
        "with it is refused (409 duplicate_run) or, with --join, gets that run.",
    ),
    join: bool = typer.Option(
        False, "--join", help="With --dedupe-id: attach to the run holding the id."
    ),
    partition_key: str = typer.Option(
        None, "--partition-key", help="Queue partition (e.g. a tenant) for fair scheduling."
    ),
    workload: str = typer.Option(
        None,
        "--workload",
        help="Declared needs, checked against `sisu queue policy`: JSON or @file, e.g. "
        '\'{"concurrency": 4, "steps": 10, "sandboxMinutes": 5}\'.',
    ),
    wait: bool = typer.Option(
        False,
        "--wait",
        help="Wait until the run succeeds, fails or waits for input. Exit 0 succeeded, "
        "10 waiting_input, 1 otherwise, 124 on --timeout.",
    ),
    timeout: float = typer.Option(
        None, "--timeout", min=0, help="With --wait: give up after this many seconds."
    ),
    json: bool = JSON,
) -> None:
    """Start the intent's run (its one durable workflow; runId = intentId).

    Running an intent again returns its existing run."""
    from sisu.cli import _render, _wait
    from sisu.cli._backend import backend
    from sisu.contracts.runs import RunRequest
    from sisu.service import intents

    _output.use_json(json)
    fields: dict[str, Any] = {"trace_id": trace_id, "dedupe_policy": "join" if join else "reject"}
    if lane is not None:
        fields["lane"] = lane
    if priority is not None:
        fields["priority"] = integer_or_text(priority)
    if dedupe_id is not None:
        fields["deduplication_id"] = dedupe_id
    if partition_key is not None:
        fields["queue_partition_key"] = partition_key
    if workload is not None:
        fields["workload"] = parse_json_arg(workload, "workload")
    request = validate(RunRequest, fields)
    with backend() as b:
        started = intents.start_run(b, intent_id, request)
        if wait:
            final = _wait.settle(b, started.run_id, timeout=timeout)
            started = started.model_copy(update={"status": final.status})
    if json:
        _output.emit(started)
    else:
        _output.data(started.run_id)
        _output.info(f"run {started.run_id}: {_render.status_text(started.status)}")
    if wait:
        raise typer.Exit(_render.exit_code_for(started.status))
