"""The paged lists' queries are index range scans: `EXPLAIN` (the plan, not a timing) of each
one, on a database holding a few thousand runs written straight into `app.*` and ANALYZEd, uses
the index migration 0009 made for it and sorts nothing — so a page costs the same at a million
runs as at a thousand. The first page and a page from the middle (a cursor) are both checked."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from sisu.db.queries import q
from sisu.service import paging
from tests.support.plans import nodes, plan

RUNS = 6000
# Statuses in the proportions a long-lived database has: mostly finished, a few waiting.
STATUS_MIX = ["succeeded"] * 14 + ["failed"] * 2
STATUS_MIX += ["canceled", "retries_exceeded", "waiting_input", "queued"]
PAGE = paging.DEFAULT_LIMIT + 1  # what the service asks for: a page and one more


@pytest.fixture(scope="module")
def history(module_db_url: str) -> Iterator[str]:
    """RUNS runs over a month, every status; each waiting run with its question card, and every
    run with artifacts of its own (the card is looked up among them)."""
    statuses = Jsonb(STATUS_MIX)
    with psycopg.connect(module_db_url) as conn:
        conn.execute(
            """
            INSERT INTO app.intents (id, goal, created_at)
            SELECT 'run-' || lpad(i::text, 6, '0'), 'seeded',
                   now() - interval '30 days' + i * interval '7 minutes'
            FROM generate_series(1, %(n)s) i
            """,
            {"n": RUNS},
        )
        conn.execute(
            """
            INSERT INTO app.runs (id, status, next_action, queue_name, app_version, created_at,
                                  updated_at)
            SELECT id, s.status, CASE WHEN s.status = 'waiting_input' THEN 'INPUT' END,
                   'sisu_intents', 'v1', created_at, created_at + interval '1 minute'
            FROM app.intents,
                 LATERAL (SELECT %(mix)s::jsonb ->> (substr(id, 5)::int %% %(k)s) AS status) s
            """,
            {"mix": statuses, "k": len(STATUS_MIX)},
        )
        conn.execute(
            """
            INSERT INTO app.artifacts (run_id, step_id, idx, kind, inline, sha256)
            SELECT r.id, step, 0, 'file', '{}'::jsonb, 'seeded'
            FROM app.runs r, unnest(ARRAY['CompileST', 'ApplyPatchST', 'DecideST']) step
            """
        )
        conn.execute(
            """
            INSERT INTO app.artifacts (run_id, step_id, idx, kind, inline, sha256)
            SELECT id, 'DecideST', 1, 'question_card',
                   jsonb_build_object('question', 'q?', 'schema', '{}'::jsonb,
                                      'timeoutSeconds', 3600, 'askedAt', updated_at),
                   'seeded'
            FROM app.runs WHERE status = 'waiting_input'
            """
        )
    with psycopg.connect(module_db_url, autocommit=True) as conn:
        conn.execute("ANALYZE app.intents, app.runs, app.artifacts")
    yield module_db_url


IN_FLIGHT = ("queued", "running", "waiting_input")


def middle(url: str, query: str, key: str, params: dict[str, Any]) -> dict[str, Any]:
    """The cursor parameters of the row half-way down the list: a page from the middle."""
    with psycopg.connect(url, row_factory=dict_row) as conn:
        found = conn.execute(q(query), {**params, **paging.FIRST_PAGE, "limit": 100_000}).fetchall()
    assert len(found) > 2 * PAGE, (query, len(found))
    row = found[len(found) // 2]
    return paging.Position(row[key], row["id"]).params()


def index_scans(node: dict[str, Any]) -> dict[str, str]:
    """Relation → index, for every index scan in the plan."""
    return {
        n["Relation Name"]: n["Index Name"]
        for n in nodes(node)
        if n["Node Type"] in ("Index Scan", "Index Only Scan")
    }


def assert_index_range_scan(node: dict[str, Any], indexes: dict[str, str]) -> None:
    types = [n["Node Type"] for n in nodes(node)]
    shown = f"{types}: {node}"
    assert node["Node Type"] == "Limit", shown
    assert index_scans(node) == indexes, shown
    # No Sort (nor Incremental Sort) anywhere: the index gives the order. No Seq Scan either.
    assert not any("Sort" in t or t == "Seq Scan" for t in types), shown
    # The cursor is part of the index condition, not a filter over rows read and thrown away.
    runs_scan = next(n for n in nodes(node) if n.get("Relation Name") == "runs")
    assert "ROW(" in runs_scan.get("Index Cond", "").replace(" ", ""), shown


@pytest.mark.parametrize("page", ["first", "middle"])
def test_run_list_is_a_range_scan_of_runs_created_id_idx(history: str, page: str) -> None:
    params: dict[str, Any] = {"status": None, "limit": PAGE, **paging.FIRST_PAGE}
    if page == "middle":
        params |= middle(history, "list_runs", "created_at", params)
    assert_index_range_scan(plan(history, "list_runs", params), {"runs": "runs_created_id_idx"})


@pytest.mark.parametrize("status", ["failed", "waiting_input", "queued"])
@pytest.mark.parametrize("page", ["first", "middle"])
def test_run_list_by_status_is_a_range_scan_of_runs_status_created_id_idx(
    history: str, status: str, page: str
) -> None:
    params: dict[str, Any] = {"status": status, "limit": PAGE, **paging.FIRST_PAGE}
    if page == "middle":
        params |= middle(history, "list_runs_by_status", "created_at", params)
    node = plan(history, "list_runs_by_status", params)
    if status in IN_FLIGHT and index_scans(node) == {"runs": "runs_active_idx"}:
        # runs_active_idx (migration 0011) holds only the runs in flight, whose number is the
        # work in flight, not the history: with few of them the planner may read them all and
        # sort them, a cost that does not grow with the database. Still never a Seq Scan.
        assert not any(n["Node Type"] == "Seq Scan" for n in nodes(node)), node
        return
    assert_index_range_scan(node, {"runs": "runs_status_created_id_idx"})


@pytest.mark.parametrize("page", ["first", "middle"])
def test_run_list_of_the_most_common_status_is_a_range_scan_too(history: str, page: str) -> None:
    """For a status most runs have, reading runs_created_id_idx and skipping the few others is
    as cheap (about limit / share rows), and the planner may well choose it: either new index
    will do, as long as it is a range scan that sorts nothing."""
    params: dict[str, Any] = {"status": "succeeded", "limit": PAGE, **paging.FIRST_PAGE}
    if page == "middle":
        params |= middle(history, "list_runs_by_status", "created_at", params)
    node = plan(history, "list_runs_by_status", params)
    used = index_scans(node).get("runs")
    assert used in ("runs_status_created_id_idx", "runs_created_id_idx"), node
    assert_index_range_scan(node, {"runs": str(used)})


@pytest.mark.parametrize("page", ["first", "middle"])
def test_inbox_is_a_range_scan_of_runs_waiting_idx_and_a_card_lookup(
    history: str, page: str
) -> None:
    params: dict[str, Any] = {"limit": PAGE, **paging.FIRST_PAGE}
    if page == "middle":
        params |= middle(history, "inbox", "updated_at", params)
    node = plan(history, "inbox", params)
    assert_index_range_scan(node, {"runs": "runs_waiting_idx", "artifacts": "artifacts_pkey"})
    card = next(n for n in nodes(node) if n.get("Relation Name") == "artifacts")
    # The card is found by the primary key's (run_id, step_id) prefix, newest idx first.
    assert "step_id" in card["Index Cond"] and "run_id" in card["Index Cond"], card
    assert card["Scan Direction"] == "Backward", card


def test_the_seeded_history_holds_what_the_plans_are_about(history: str) -> None:
    """Guards the premise: thousands of runs, every status, each waiting run with one card."""
    with psycopg.connect(history) as conn:
        counts: dict[str, int] = dict(
            conn.execute("SELECT status, count(*) FROM app.runs GROUP BY status").fetchall()
        )
        cards = conn.execute(
            "SELECT count(*) FROM app.artifacts WHERE kind = 'question_card'"
        ).fetchone()
    assert sum(counts.values()) == RUNS
    assert set(counts) == set(STATUS_MIX)
    assert cards is not None and cards[0] == counts["waiting_input"] > 2 * PAGE
