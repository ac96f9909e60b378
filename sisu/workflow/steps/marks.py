"""Crash-demo evidence: one `app.marks` row per step, written exactly once."""

from __future__ import annotations

from dbos import DBOS

from sisu.db.queries import q
from sisu.workflow.steps import datasource


def _insert_mark(step: str) -> int:
    row = (
        datasource.connection()
        .execute(q("insert_mark"), {"workflow_id": DBOS.workflow_id, "step": step})
        .fetchone()
    )
    assert row is not None
    return int(row["id"])


def mark(step: str) -> int:
    """Insert the mark for `step` of the current workflow; returns the mark's id."""
    return datasource.run(f"mark_{step}", _insert_mark, step)
