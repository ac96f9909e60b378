"""Database administration behind `sisu db`: status, reset."""

from __future__ import annotations

from sisu.config import Settings
from sisu.contracts.ops import DbStatus, SchemaState
from sisu.db import embedded, migrations
from sisu.db.connection import connect
from sisu.db.url import redact, resolve


def status(settings: Settings) -> DbStatus:
    """What the database is and how far its schemas are migrated. Never starts a server."""
    mode = "embedded" if settings.embedded else "external"
    data_dir = str(embedded.data_dir(settings.home)) if settings.embedded else None
    url = resolve(settings, start=False)
    if url is None:
        return DbStatus(
            mode=mode,
            running=False,
            url=None,
            server_version=None,
            data_dir=data_dir,
            app_schema=None,
            dbos_schema_version=None,
        )
    with connect(url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        applied = migrations.applied(conn)
        dbos_version = migrations.dbos_version(conn)
    known = [m.version for m in migrations.available()]
    return DbStatus(
        mode=mode,
        running=True,
        url=redact(url),
        server_version=row["server_version"] if row else None,
        data_dir=data_dir,
        app_schema=SchemaState(
            current=applied[-1] if applied else None,
            latest=known[-1] if known else None,
            pending=[v for v in known if v not in applied],
        ),
        dbos_schema_version=dbos_version,
    )


def reset(url: str, *, system: bool) -> None:
    """Drop and recreate `app` (and `dbos` with `system`), leaving both freshly migrated."""
    with connect(url) as conn:
        conn.execute("DROP SCHEMA IF EXISTS app CASCADE")
        if system:
            conn.execute("DROP SCHEMA IF EXISTS dbos CASCADE")
    migrations.migrate_app(url)
    migrations.migrate_dbos(url)
