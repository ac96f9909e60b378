"""Rows read straight from the database, databases cloned from a template, and throwaway homes
for a test's own embedded server."""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.rows import dict_row


def rows(url: str, query: str, params: Any = None) -> list[dict[str, Any]]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(query, params).fetchall()


def scalar(url: str, query: str, params: Any = None) -> Any:
    with psycopg.connect(url) as conn:
        row = conn.execute(query, params).fetchone()
        return row[0] if row else None


def table_counts(url: str, tables: list[str]) -> dict[str, int]:
    return {t: scalar(url, f"SELECT count(*) FROM {t}") for t in tables}


def with_database(url: str, name: str) -> str:
    """`url` pointed at database `name`."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def admin_execute(admin_url: str, statement: sql.Composed) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(statement)


def clone_template(admin_url: str, template: str, name: str | None = None) -> tuple[str, str]:
    """CREATE DATABASE … TEMPLATE: returns (name, url)."""
    name = name or f"sisu_rl_{uuid.uuid4().hex[:8]}"
    admin_execute(
        admin_url,
        sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(template)
        ),
    )
    return name, with_database(admin_url, name)


def drop_database(admin_url: str, name: str) -> None:
    admin_execute(
        admin_url, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    )


@contextmanager
def cloned_database(admin_url: str, template: str, prefix: str = "sisu_ops") -> Iterator[str]:
    """A fresh database cloned from `template` (the session template, or a database a module
    prepared), dropped at exit."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    # CREATE DATABASE … TEMPLATE refuses while anything is still connected to the template;
    # a worker that just exited may take a moment to disappear from pg_stat_activity.
    deadline = time.monotonic() + 15
    while True:
        try:
            _, url = clone_template(admin_url, template, name)
            break
        except psycopg.errors.ObjectInUse:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    try:
        yield url
    finally:
        drop_database(admin_url, name)


@contextmanager
def throwaway_home(prefix: str) -> Iterator[Path]:
    """A short SISU_HOME for a test's own embedded server (its socket lives in the data
    directory); the server and its data are destroyed at exit (as root the data lives outside
    the home, under /var/lib/sisu/pg)."""
    from sisu.db import embedded

    home = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        yield home
    finally:
        embedded.destroy(home)
        shutil.rmtree(home, ignore_errors=True)
