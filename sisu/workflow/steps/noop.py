"""A step that does nothing but be checkpointed: the raw cost of a DBOS step."""

from __future__ import annotations

from dbos import DBOS


@DBOS.step(name="noop")
def noop_step(step: str) -> str:
    return step
