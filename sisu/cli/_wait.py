"""Waiting for a run to settle (`sisu intent run --wait`, `sisu run watch`): the service's poll,
and one line on stderr when the run sits queued with no live worker able to take it, which the
wait would otherwise sit out in silence until --timeout, or forever."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from sisu.cli import _output

if TYPE_CHECKING:
    from sisu.contracts.runs import RunView
    from sisu.service.backend import Backend

# How often a queued run's workers are looked at (each look is one query), until one is missing.
CHECK_EVERY_SECONDS = 5.0


def settle(
    b: Backend,
    run_id: str,
    *,
    timeout: float | None,
    on_view: Callable[[RunView], None] = lambda _: None,
) -> RunView:
    """Until the run is terminal or waits for a human (TimedOut after `timeout` seconds)."""
    from sisu.cli._settings import settings
    from sisu.service import views

    dead_after = settings().worker_dead_after_seconds
    told = False
    next_look = 0.0

    def watch(view: RunView) -> None:
        nonlocal told, next_look
        on_view(view)
        if told or view.status != "queued" or time.monotonic() < next_look:
            return
        next_look = time.monotonic() + CHECK_EVERY_SECONDS
        gap = views.unserved(b, run_id, dead_after_seconds=dead_after)
        if gap is not None:
            told = True
            _output.info(
                f"run {run_id} is queued, and no live worker of app version {gap.app_version} "
                f"takes runs from queue {gap.queue}: start one with "
                f"`sisu worker --app-version {gap.app_version}` (`sisu doctor` explains); "
                "still waiting"
            )

    return views.wait_until_settled(b, run_id, timeout=timeout, on_view=watch)
