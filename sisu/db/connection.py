"""Connections to sisu's database; psycopg errors are translated to `SisuError`s here, once."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row

from sisu.db.url import redact
from sisu.errors import DatabaseUnavailable

CONNECT_TIMEOUT_SECONDS = 5


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


@contextmanager
def connect(url: str, *, autocommit: bool = False) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    """A connection with dict rows. Commits on a clean exit, rolls back on an error."""
    try:
        conn = psycopg.connect(
            url,
            autocommit=autocommit,
            row_factory=dict_row,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            application_name="sisu",
        )
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(f"cannot connect to {redact(url)}: {_first_line(exc)}") from exc
    try:
        with conn:
            yield conn
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(f"lost the database connection: {_first_line(exc)}") from exc
