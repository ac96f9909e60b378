"""`sisu queue`: the queue policy in force and what is waiting on the queues."""

from __future__ import annotations

import typer

from sisu.cli import _output

app = typer.Typer(help="Queue policy and queue depth.", no_args_is_help=True)

JSON = typer.Option(False, "--json", help="Print the result as JSON on stdout.")


@app.command()
def policy(json: bool = JSON) -> None:
    """Print the caps, lane priorities and concurrency settings in force (from the environment)."""
    from sisu.cli._settings import settings
    from sisu.service.policy import QueuePolicy

    _output.use_json(json)
    described = QueuePolicy.from_settings(settings()).describe()
    described.pop("raw")
    if json:
        _output.emit_obj(described)
        return
    caps = described["caps"]
    _output.data(
        f"caps        concurrency <= {caps['concurrency']}, steps <= {caps['steps']}, "
        f"sandboxMinutes <= {caps['sandboxMinutes']}"
    )
    lanes = ", ".join(f"{k} {v}" for k, v in described["lanes"].items())
    _output.data(f"lanes       default priority: {lanes} (1-1000, lower runs sooner)")
    for name, conf in described["queues"].items():
        shown = ", ".join(f"{k} {v if v is not None else 'unlimited'}" for k, v in conf.items())
        _output.data(f"queue       {name}: {shown}")
    _output.info(
        "set with " + ", ".join(described["env"]["caps"] + described["env"]["concurrency"])
    )


@app.command(name="list")
def list_(json: bool = JSON) -> None:
    """Queue depth:

    runs waiting or executing per queue, lane, partition and status, with the age of the oldest."""
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
