"""The verdict of a fault drill, from rows: how the drill's runs ended and what the audit says."""

from __future__ import annotations

import statistics

from sisu import names
from sisu.audit import oracles
from sisu.config import Settings
from sisu.contracts.ops import ChaosResult, KillRecord, Percentiles
from sisu.db.connection import connect
from sisu.db.queries import q

TERMINAL = names.TERMINAL_STATUSES


def statuses(url: str, run_ids: list[str]) -> dict[str, int]:
    with connect(url) as conn:
        rows = conn.execute(q("chaos_statuses"), {"run_ids": run_ids}).fetchall()
    return {r["status"]: r["n"] for r in rows}


def unfinished(url: str, run_ids: list[str]) -> int:
    return sum(n for s, n in statuses(url, run_ids).items() if s not in TERMINAL)


def summarize(
    url: str, settings: Settings, run_ids: list[str], kills: list[KillRecord], iterations: int
) -> ChaosResult:
    """ok only when every run succeeded, no effect was delivered twice and the audit of the
    drill's runs is clean."""
    report = oracles.run(
        url, run_ids=run_ids, dead_after_seconds=settings.worker_dead_after_seconds
    )
    duplicates = next(c.count for c in report.checks if c.name == "duplicate_effects")
    ended = statuses(url, run_ids)
    succeeded = ended.get("succeeded", 0)
    recoveries = [k.recovery_seconds for k in kills if k.recovery_seconds is not None]
    return ChaosResult(
        ok=succeeded == len(run_ids) and duplicates == 0 and report.ok,
        iterations=iterations,
        kills=len(kills),
        runs=len(run_ids),
        succeeded=succeeded,
        duplicates=duplicates,
        pending_left=len(run_ids) - sum(ended.get(s, 0) for s in TERMINAL),
        recovery_seconds=Percentiles(
            p50=round(statistics.median(recoveries), 3) if recoveries else None,
            max=max(recoveries) if recoveries else None,
        ),
        audit_ok=report.ok,
        kill_log=kills,
    )
