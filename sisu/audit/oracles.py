"""SQL oracles over `app.*` and `dbos.*`: each names a law and counts the rows that break it.
The queries live in `sql/queries.sql` (`audit_*`), so an operator can re-run any of them in psql
(`sisu audit -v` prints them with their parameters filled in)."""

from __future__ import annotations

from typing import Any

from psycopg import ClientCursor

from sisu.contracts.ops import AuditCheck, AuditReport
from sisu.db.connection import connect
from sisu.db.queries import q

# (check name, its query in sql/queries.sql, what a row of it means). The query is named in full
# so that a search for it finds this caller.
CHECKS: tuple[tuple[str, str, str], ...] = (
    (
        "duplicate_effects",
        "audit_duplicate_effects",
        "receipts the outside system saw more than once (seen_count > 1)",
    ),
    (
        "step_sequence",
        "audit_step_sequence",
        "succeeded runs without the four stable steps, each succeeded, in order",
    ),
    (
        "status_agreement",
        "audit_status_agreement",
        "runs whose app.runs status disagrees with dbos.workflow_status",
    ),
    (
        "compiler_calls",
        "audit_compiler_calls",
        "CompileST attempts without a recorded request and response",
    ),
    (
        "deliveries",
        "audit_deliveries",
        "http-executor runs with a task its webhook never answered with a 2xx",
    ),
    (
        "stranded_runs",
        "audit_stranded_runs",
        "queued runs no live worker serves, pending runs on a dead executor",
    ),
    (
        "stalled_runs",
        "audit_stalled_runs",
        "runs pending on a live worker that runs no thread of them and made no progress lately",
    ),
    (
        "unread_events",
        "audit_unread_events",
        "human answers sent to runs that finished without reading them",
    ),
    (
        "orphan_intents",
        "audit_orphan_intents",
        "intents never run, older than the orphan threshold (a warning)",
    ),
)
# Checks whose rows deserve a look but break no law: they show, and the audit still passes.
WARNINGS = frozenset({"orphan_intents"})
# An intent is created, then run a moment later; one still without a run after this long was
# most likely abandoned (or created twice by a client that retried without an idempotency key).
ORPHAN_AFTER_SECONDS = 600.0
DETAIL_ROWS = 20
# A live worker resumes what it lost within a few heartbeats; a run still lost after this long is
# reported (a worker too old to resume, or one whose resume keeps failing).
STALLED_AFTER_SECONDS = 30.0


def _bounded(check_sql: str) -> str:
    """The check with how many rows it has and only its first DETAIL_ROWS: a check that finds
    fifty thousand runs counts them in the database instead of sending every row here."""
    return (
        f"SELECT c.*, count(*) OVER () AS {_TOTAL} FROM (\n{check_sql}\n) AS c LIMIT {DETAIL_ROWS}"
    )


_TOTAL = "_audit_total_rows"


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}


def run(
    url: str,
    *,
    run_id: str | None = None,
    run_ids: list[str] | None = None,
    dead_after_seconds: float = 10.0,
    stalled_after_seconds: float = STALLED_AFTER_SECONDS,
    orphan_after_seconds: float = ORPHAN_AFTER_SECONDS,
    show_sql: bool = False,
) -> AuditReport:
    """Every check, over the whole database or only over `run_id` / `run_ids`."""
    scope = [run_id] if run_id is not None else run_ids
    params = {
        "run_ids": scope,
        "dead_after_seconds": dead_after_seconds,
        "stalled_after_seconds": stalled_after_seconds,
        "orphan_after_seconds": orphan_after_seconds,
    }
    checks = []
    with connect(url) as conn:
        mogrifier = ClientCursor(conn)
        for name, query, description in CHECKS:
            sql = q(query)
            rows = conn.execute(_bounded(sql), params).fetchall()
            count = rows[0][_TOTAL] if rows else 0
            checks.append(
                AuditCheck(
                    name=name,
                    ok=not rows,
                    count=count,
                    detail=[_jsonable({k: v for k, v in r.items() if k != _TOTAL}) for r in rows],
                    description=description,
                    sql=mogrifier.mogrify(sql, params) + ";" if show_sql else None,
                    severity="warning" if name in WARNINGS else "error",
                )
            )
    return AuditReport(
        ok=all(c.ok for c in checks if c.severity == "error"),
        run_id=run_id,
        checks=checks,
        warnings=sum(1 for c in checks if c.severity == "warning" and not c.ok),
    )
