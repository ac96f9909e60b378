"""Named SQL queries from `sql/queries.sql`, each under a `-- name: query_name` header."""

from __future__ import annotations

import re
from functools import cache

from sisu.db.resources import sql_dir

_HEADER = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


def parse(text: str) -> dict[str, str]:
    parts = _HEADER.split(text)
    # parts = [preamble, name1, body1, name2, body2, ...]
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice in queries.sql")
        # Comment lines after a query's statement belong to what follows (a section heading).
        lines = body.strip().splitlines()
        while lines and (not lines[-1].strip() or lines[-1].lstrip().startswith("--")):
            lines.pop()
        queries[name] = "\n".join(lines).rstrip().rstrip(";")
    return queries


@cache
def all_queries() -> dict[str, str]:
    return parse((sql_dir() / "queries.sql").read_text())


def q(name: str) -> str:
    """The SQL of one named query (psycopg `%(param)s` placeholders)."""
    return all_queries()[name]
