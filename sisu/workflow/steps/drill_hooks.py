"""Pause points for drills. `sisu chaos --kill-point after-effect` needs the kill to land after a
delivery to the outside system and before the step's checkpoint commits; a worker started with
SISU_DRILL_PAUSE_AFTER_EFFECT=<seconds> pauses there and records that it did, so the drill can
kill it inside that window. Off (and free) unless the variable is set."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path

ENV_PAUSE = "SISU_DRILL_PAUSE_AFTER_EFFECT"
ENV_MARKER_DIR = "SISU_DRILL_MARKER_DIR"


def after_effect(run_id: str) -> None:
    pause = os.environ.get(ENV_PAUSE)
    if not pause:
        return
    marker_dir = os.environ.get(ENV_MARKER_DIR)
    if marker_dir:
        # The drill waits for this file, then kills: the kill lands inside the pause.
        marker = Path(marker_dir) / f"{run_id}.{time.time_ns()}.after-effect"
        marker.write_text(datetime.now(UTC).isoformat())
    time.sleep(float(pause))
