"""CrashDemoWF: mark s1, sleep durably, mark s2 — the kill -9 proof of Walkthrough A."""

from __future__ import annotations

from dbos import DBOS

from sisu import names
from sisu.workflow.steps.marks import mark

NAME = names.CRASH_DEMO_WF


@DBOS.workflow(name=NAME)
def crash_demo_wf(sleep_seconds: float) -> dict[str, int]:
    s1 = mark("s1")
    DBOS.sleep(sleep_seconds)
    s2 = mark("s2")
    return {"s1": s1, "s2": s2}
