"""Reading a named query's plan: `EXPLAIN (FORMAT JSON)` of `sql/queries.sql` queries, for tests
that check a read stays an index scan as the database grows (never a timing)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg

from sisu.db.queries import q


def plan(url: str, query: str, params: dict[str, Any]) -> dict[str, Any]:
    """The root node of the named query's plan with these parameters."""
    with psycopg.connect(url) as conn:
        row = conn.execute("EXPLAIN (FORMAT JSON) " + q(query), params).fetchone()
    assert row is not None
    document: list[dict[str, Any]] = row[0]
    root: dict[str, Any] = document[0]["Plan"]
    return root


def nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every node of a plan, the root first."""
    yield node
    for child in node.get("Plans", []):
        yield from nodes(child)
