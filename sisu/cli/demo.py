"""`sisu demo`: sisu's main job end to end on one machine."""

from __future__ import annotations

import typer

from sisu.cli import _output


def demo(
    goal: str = typer.Option("demo: say hello to the outside system", "--goal", help="The goal."),
    json: bool = _output.json_option("Print the final RunView as JSON."),
) -> None:
    """Run sisu's main job end to end.

    Starts a worker in the background, creates and runs an intent, watches it to the end,
    prints the RunView and stops the worker. Uses the embedded database unless
    SISU_DATABASE_URL is set."""
    import uuid

    from sisu.cli import _render
    from sisu.cli._settings import database_url, settings
    from sisu.contracts.runs import IntentCreate, RunRequest
    from sisu.drills.processes import WorkerProcess
    from sisu.service import intents, views
    from sisu.service.backend import Backend

    _output.use_json(json)
    s = settings()
    url = database_url(s)
    executor_id = f"demo-{uuid.uuid4().hex[:8]}"
    worker = WorkerProcess(
        url=url,
        executor_id=executor_id,
        app_version=s.app_version,
        log_path=s.logs_dir / f"{executor_id}.log",
    ).start()
    backend = Backend.from_settings(url, s, pool_size=2)
    try:
        intent = intents.create_intent(backend, IntentCreate(goal=goal, inputs={"tasks": 2}))
        _output.info(f"intent {intent.intent_id} created; worker {executor_id} pid {worker.pid}")
        started = intents.start_run(backend, intent.intent_id, RunRequest(trace_id="demo"))
        if _output.interactive():
            from rich.live import Live

            with Live(console=_output.err_console(), auto_refresh=False) as live:
                final = views.wait_until_settled(
                    backend,
                    started.run_id,
                    timeout=120,
                    on_view=lambda v: live.update(_render.run_view(v), refresh=True),
                )
        else:
            final = views.wait_until_settled(backend, started.run_id, timeout=120)
    finally:
        backend.close()
        worker.stop()
    if json:
        _output.emit(final)
    else:
        if not _output.interactive():
            _output.out_console().print(_render.run_view(final))
        _output.info(
            f"run {final.run_id} {_render.status_text(final.status)}; see it again with "
            f"`sisu run show {final.run_id}`"
        )
    raise typer.Exit(_render.exit_code_for(final.status))
