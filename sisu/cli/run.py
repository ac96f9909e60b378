"""`sisu run`: read and watch runs."""

from __future__ import annotations

import typer

from sisu.cli import _output

app = typer.Typer(help="Show, list and watch runs.", no_args_is_help=True)

JSON = typer.Option(False, "--json", help="Print the result as JSON on stdout.")


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


@app.command(name="list")
def list_(
    status: str = typer.Option(None, "--status", help="Only runs with this status."),
    limit: int = typer.Option(50, "--limit", help="At most this many runs (1-1000)."),
    json: bool = JSON,
) -> None:
    """List runs, newest first."""
    from sisu.cli import _render
    from sisu.cli._backend import backend
    from sisu.service import views

    _output.use_json(json)
    with backend() as b:
        runs = views.list_runs(b, status=status, limit=limit)
    if json:
        _output.data("[" + ",".join(r.to_json() for r in runs) + "]")
    else:
        _output.out_console().print(_render.run_list(runs))


@app.command()
def watch(
    run_id: str = typer.Argument(..., help="Run id (= intent id)."),
    timeout: float = typer.Option(None, "--timeout", min=0, help="Give up after N seconds."),
) -> None:
    """Watch a run live until it is terminal or waits for input. Exit 0 succeeded, 10
    waiting_input, 1 failed/canceled/retries_exceeded, 124 on --timeout."""
    from sisu.cli import _render
    from sisu.cli._backend import backend
    from sisu.service import views

    with backend() as b:
        if _output.interactive():
            from rich.live import Live

            with Live(console=_output.err_console(), auto_refresh=False) as live:
                final = views.wait_until_settled(
                    b,
                    run_id,
                    timeout=timeout,
                    on_view=lambda v: live.update(_render.run_view(v), refresh=True),
                )
        else:
            final = views.wait_until_settled(b, run_id, timeout=timeout)
            _output.out_console().print(_render.run_view(final))
    raise typer.Exit(_render.exit_code_for(final.status))
