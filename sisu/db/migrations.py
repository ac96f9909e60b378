"""Forward-only schema migrations for `app.*` (files `sql/migrations/NNNN_name.sql`), plus the
hand-off to DBOS's own migrations for `dbos.*`.

Each file runs in its own transaction together with its row in `app.schema_migrations`;
concurrent runners are serialised by a session advisory lock, as DBOS's runner does."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import psycopg

from sisu.db.connection import connect
from sisu.db.resources import sql_dir
from sisu.errors import MigrationError

# pg_advisory_lock key for sisu's migration runner ("sisu" in ASCII).
LOCK_KEY = 0x73697375
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

BOOTSTRAP = """
CREATE SCHEMA IF NOT EXISTS app;
CREATE TABLE IF NOT EXISTS app.schema_migrations (
    version    text PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
"""


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    sql: str


def available() -> list[Migration]:
    found = []
    for entry in (sql_dir() / "migrations").iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append(Migration(match[1], match[2], entry.read_text()))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migration files share a version: {versions}")
    return found


def latest_version() -> str:
    return available()[-1].version


def script(migrations: list[Migration] | None = None) -> str:
    """The SQL a migration run would execute on an empty database, for `sisu db migrate --print`."""
    parts = [BOOTSTRAP.strip()]
    for m in migrations if migrations is not None else available():
        parts.append(
            f"-- {m.version}_{m.name}\nBEGIN;\n{m.sql.strip()}\n"
            f"INSERT INTO app.schema_migrations (version, name) "
            f"VALUES ('{m.version}', '{m.name}');\nCOMMIT;"
        )
    return "\n\n".join(parts) + "\n"


def applied(conn: psycopg.Connection[Any]) -> list[str]:
    exists = conn.execute("SELECT to_regclass('app.schema_migrations') AS t").fetchone()
    if not exists or exists["t"] is None:
        return []
    rows = conn.execute("SELECT version FROM app.schema_migrations ORDER BY version").fetchall()
    return [r["version"] for r in rows]


def migrate_app(url: str) -> list[str]:
    """Apply every pending `app` migration; returns the versions applied (empty: a no-op)."""
    done: list[str] = []
    with connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        try:
            conn.execute(BOOTSTRAP)
            already = set(applied(conn))
            for m in available():
                if m.version in already:
                    continue
                try:
                    with conn.transaction():
                        conn.execute(m.sql.encode())
                        conn.execute(
                            "INSERT INTO app.schema_migrations (version, name) VALUES (%s, %s)",
                            (m.version, m.name),
                        )
                except psycopg.Error as exc:
                    raise MigrationError(
                        f"migration {m.version}_{m.name} failed: {exc}",
                        details={"version": m.version},
                    ) from exc
                done.append(m.version)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
    return done


def dbos_version(conn: psycopg.Connection[Any]) -> int | None:
    """The DBOS system-schema migration version, None when `dbos.*` does not exist yet."""
    exists = conn.execute("SELECT to_regclass('dbos.dbos_migrations') AS t").fetchone()
    if not exists or exists["t"] is None:
        return None
    row = conn.execute("SELECT max(version) AS v FROM dbos.dbos_migrations").fetchone()
    return int(row["v"]) if row and row["v"] is not None else None


def migrate_dbos(url: str) -> None:
    """Create or upgrade DBOS's system tables (schema `dbos`) with DBOS's own runner."""
    from sisu import engine
    from sisu.db.url import sqlalchemy_url

    engine.quiet_dbos_logs()
    from dbos import DBOS, SQLAlchemyDatasource

    sa_url = sqlalchemy_url(url)
    try:
        DBOS.migrate(sa_url, schema=engine.DBOS_SCHEMA)
        # The table where datasource transactions checkpoint (exactly-once writes).
        SQLAlchemyDatasource.migrate(sa_url, schema=engine.DBOS_SCHEMA)
    except Exception as exc:
        raise MigrationError(f"DBOS system migrations failed: {exc}") from exc


def ensure(url: str) -> None:
    """Bring both schemas up to date if they are not; cheap when they are."""
    with connect(url) as conn:
        current = applied(conn)
        has_dbos = dbos_version(conn) is not None
    if not current or current[-1] != latest_version():
        migrate_app(url)
    if not has_dbos:
        migrate_dbos(url)
