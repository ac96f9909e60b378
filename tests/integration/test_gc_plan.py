"""`sisu gc`'s statements stay cheap as the database grows: `EXPLAIN` (the plan, not a timing) on
a few thousand ANALYZEd runs shows each batch read as a range scan of the index migration 0010
made for it (from the keyset on, no sort), and a run's human events deleted through theirs."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from tests.support.plans import nodes, plan

RUNS = 6000
# Statuses in the proportions a long-lived database has: mostly finished, a few live.
STATUSES = ["succeeded"] * 14 + ["failed"] * 2
STATUSES += ["canceled", "retries_exceeded", "waiting_input", "queued"]


@pytest.fixture(scope="module")
def history(module_db_url: str) -> Iterator[str]:
    with psycopg.connect(module_db_url) as conn:
        conn.execute(
            """
            INSERT INTO app.intents (id, goal, created_at)
            SELECT 'run-' || lpad(i::text, 6, '0'), 'seeded',
                   now() - interval '60 days' + i * interval '13 minutes'
            FROM generate_series(1, %(n)s) i
            """,
            {"n": RUNS},
        )
        conn.execute(
            """
            INSERT INTO app.runs (id, status, queue_name, app_version, created_at, updated_at)
            SELECT id, (%(statuses)s::text[])[1 + substr(id, 5)::int %% %(k)s], 'sisu_intents',
                   'v1', created_at, created_at + interval '1 minute'
            FROM app.intents
            """,
            {"statuses": STATUSES, "k": len(STATUSES)},
        )
        conn.execute(
            """
            INSERT INTO app.human_events (run_id, type, payload, dedupe_key)
            SELECT id, 'input', '{}'::jsonb, id || ':answer' FROM app.runs
            """
        )
    with psycopg.connect(module_db_url, autocommit=True) as conn:
        conn.execute("ANALYZE app.intents, app.runs, app.human_events")
    yield module_db_url


def scans_of(node: dict[str, Any], relation: str) -> list[dict[str, Any]]:
    return [
        n for n in nodes(node) if n.get("Relation Name") == relation and "Scan" in n["Node Type"]
    ]


@pytest.mark.parametrize("page", ["first", "middle"])
def test_a_batch_is_a_range_scan_of_runs_status_updated_idx(history: str, page: str) -> None:
    after: tuple[datetime, str] = (datetime(1, 1, 1, tzinfo=UTC), "")
    if page == "middle":
        with psycopg.connect(history) as conn:
            row = conn.execute(
                "SELECT updated_at, id FROM app.runs WHERE status = 'succeeded' "
                "ORDER BY updated_at, id OFFSET 400 LIMIT 1"
            ).fetchone()
        assert row is not None
        after = (row[0], row[1])
    root = plan(
        history,
        "gc_lock_finished_runs",
        {
            "status": "succeeded",
            "cutoff": datetime.now(UTC),
            "after_at": after[0],
            "after_id": after[1],
            "dead_after_seconds": 10.0,
            "limit": 500,
        },
    )
    types = [n["Node Type"] for n in nodes(root)]
    shown = f"{types}: {root}"
    assert root["Node Type"] == "Limit", shown
    assert not any("Sort" in t for t in types), shown
    [runs] = scans_of(root, "runs")
    assert runs["Node Type"] == "Index Scan" and runs["Index Name"] == "runs_status_updated_idx"
    # The keyset is part of the index condition, not a filter over rows read and thrown away.
    assert "ROW(" in runs["Index Cond"].replace(" ", ""), shown


def test_deleting_a_batch_finds_human_events_by_their_run_index(history: str) -> None:
    # A batch small beside the table, as in a database that has grown: 50 of 6,000 runs.
    ids = [f"run-{i:06d}" for i in range(1, 51)]
    root = plan(history, "gc_delete_app_rows", {"ids": ids, "family": ids})
    [events] = scans_of(root, "human_events")
    assert events["Node Type"] in ("Index Scan", "Bitmap Heap Scan", "Index Only Scan"), root
    index_names = {n.get("Index Name") for n in nodes(root) if n.get("Index Name")}
    assert "human_events_run_idx" in index_names, root
