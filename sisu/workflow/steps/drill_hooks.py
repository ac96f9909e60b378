"""Marker and pause points for drills, off (and free) unless a drill's worker sets them.

`sisu chaos` needs its kills to land at precise moments. A worker started with
SISU_DRILL_MARKER_DIR writes a marker file when ExecuteST starts and after each delivery to the
outside system; with SISU_DRILL_PAUSE_AFTER_EFFECT=<seconds> it also pauses after a delivery,
before the step's checkpoint commits, so the drill can kill it inside that window."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path

ENV_PAUSE = "SISU_DRILL_PAUSE_AFTER_EFFECT"
ENV_MARKER_DIR = "SISU_DRILL_MARKER_DIR"


def _mark(run_id: str, point: str) -> None:
    marker_dir = os.environ.get(ENV_MARKER_DIR)
    if marker_dir:
        # The drill waits for a new file of the point it aims at, then kills.
        marker = Path(marker_dir) / f"{run_id}.{time.time_ns()}.{point}"
        marker.write_text(datetime.now(UTC).isoformat())


def entered_execute(run_id: str) -> None:
    _mark(run_id, "execute")


def after_effect(run_id: str) -> None:
    pause = os.environ.get(ENV_PAUSE)
    if not pause:
        return
    _mark(run_id, "after-effect")
    time.sleep(float(pause))
