"""`sisu workers`: the workers sharing this database."""

from __future__ import annotations

import typer

from sisu.cli import _output

app = typer.Typer(
    help="Workers sharing this database (from their heartbeats).", no_args_is_help=True
)


@app.command(name="list")
def list_(json: bool = _output.json_option("Print the list as JSON.")) -> None:
    """List every worker that has heartbeated on this database, alive ones first.

    Each with its executor id, host, pid, admin port, app version, last heartbeat, alive or
    dead, and runs in flight."""
    from sisu.cli._backend import backend
    from sisu.cli._settings import settings
    from sisu.service import workers

    _output.use_json(json)
    with backend() as b:
        rows = workers.list_workers(b, settings().worker_dead_after_seconds)
    if json:
        _output.emit_obj(rows)
        return
    from rich.table import Table

    table = Table(show_edge=False, pad_edge=False)
    for col in (
        "executor",
        "host",
        "pid",
        "admin port",
        "version",
        "state",
        "in flight",
        "last heartbeat",
    ):
        table.add_column(col)
    for w in rows:
        state = (
            "[green]alive[/]" if w["alive"] else ("stopped" if w["stoppedAt"] else "[red]dead[/]")
        )
        table.add_row(
            w["executorId"], w["host"], str(w["pid"]),
            "-" if w["adminPort"] is None else str(w["adminPort"]), w["appVersion"], state,
            str(w["inFlight"]), w["heartbeatAt"][:19],
        )  # fmt: skip
    _output.out_console().print(table if rows else "no worker has ever started on this database")
    if not rows:
        from sisu.cli._backend import empty

        empty()
