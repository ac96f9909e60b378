"""`sisu queue`: the queue policy in force and what is waiting on the queues."""

from __future__ import annotations

import typer

from sisu.cli import _output
from sisu.cli._output import JSON

app = typer.Typer(help="Queue policy and queue depth.", no_args_is_help=True)


@app.command()
def policy(json: bool = JSON) -> None:
    """Print the caps and lane priorities in force, and the queue settings every worker uses.

    The caps come from the environment. The queue settings are stored in the database, and
    every worker dequeues with them: the last worker started sets them from its flags
    (--concurrency, SISU_GLOBAL_CONCURRENCY, ...)."""
    from sisu.cli._backend import backend
    from sisu.cli._settings import settings
    from sisu.service import queues
    from sisu.service.policy import QueuePolicy

    _output.use_json(json)
    described = QueuePolicy.from_settings(settings()).describe()
    described.pop("raw")
    with backend() as b:
        described["stored"] = queues.stored(b)
    if json:
        _output.emit_obj(described)
        return
    caps = described["caps"]
    _output.data(
        f"caps        concurrency <= {caps['concurrency']}, steps <= {caps['steps']}, "
        f"sandboxMinutes <= {caps['sandboxMinutes']}, modelRequests <= {caps['modelRequests']}, "
        f"tokens <= {caps['tokens']}"
    )
    lanes = ", ".join(f"{k} {v}" for k, v in described["lanes"].items())
    _output.data(f"lanes       default priority: {lanes} (1-1000, lower runs sooner)")
    if not described["stored"]:
        _output.data("queues      no settings stored yet: the first worker stores its own")
    for name, conf in described["stored"].items():
        limits = ", ".join(
            f"{key} {'unlimited' if conf[key] is None else conf[key]}"
            for key in ("workerConcurrency", "globalConcurrency", "partitionConcurrency")
        )
        who = f"set by {conf['setBy']} at {conf['setAt']}" if conf["setBy"] else "set by DBOS"
        _output.data(f"queue       {name}: {limits} ({who})")
    _output.info(
        "caps: " + ", ".join(described["env"]["caps"]) + "; queue settings: the flags of the "
        "last worker started (sisu worker --concurrency N), for every worker"
    )


@app.command(name="list")
def list_(json: bool = JSON) -> None:
    """Queue depth: runs waiting or executing per queue, lane, partition and status.

    Each row also gives the age of its oldest run."""
    from sisu.cli._backend import backend
    from sisu.service import queues

    _output.use_json(json)
    with backend() as b:
        depth = queues.depth(b)
    if json:
        _output.emit_obj({"queues": depth})
        return
    from rich.table import Table

    table = Table(show_edge=False, pad_edge=False)
    for col in ("queue", "lane", "partition", "status", "runs", "oldest (s)"):
        table.add_column(col)
    for row in depth:
        table.add_row(
            row["queue"],
            row["lane"] or "-",
            row["partition"] or "-",
            row["status"],
            str(row["count"]),
            f"{row['oldestAgeSeconds']:.1f}",
        )
    _output.out_console().print(table if depth else "queues are empty")
    if not depth:
        from sisu.cli._backend import empty

        empty()
