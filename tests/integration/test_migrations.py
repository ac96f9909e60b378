"""The migration runner: builds `app.*` from empty, is a no-op when current, serialises
concurrent runners, applies nothing of a failing migration; and DBOS's own schema."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest

from sisu.db import migrations
from sisu.errors import MigrationError
from tests.support.db import rows, scalar

APP_TABLES = {
    "intents",
    "runs",
    "run_steps",
    "artifacts",
    "opencode_calls",
    "mock_receipts",
    "human_events",
    "marks",
    "workflow_runs",
    "workers",
    "schema_migrations",
    "deliveries",
}


def app_tables(url: str) -> set[str]:
    found = rows(
        url,
        "SELECT table_name FROM information_schema.tables "
        "WHERE table_schema = 'app' AND table_type = 'BASE TABLE'",
    )
    return {r["table_name"] for r in found}


def schema_snapshot(url: str) -> dict[str, Any]:
    """Everything a migration could change in `app`: columns, indexes, constraints, versions."""
    return {
        "columns": rows(
            url,
            "SELECT table_name, column_name, data_type, is_nullable, column_default "
            "FROM information_schema.columns WHERE table_schema = 'app' "
            "ORDER BY table_name, ordinal_position",
        ),
        "indexes": rows(
            url,
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'app' "
            "ORDER BY indexname",
        ),
        "constraints": rows(
            url,
            "SELECT conname, pg_get_constraintdef(c.oid) AS def FROM pg_constraint c "
            "JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = 'app' "
            "ORDER BY conname",
        ),
        "versions": rows(
            url, "SELECT version, name, applied_at FROM app.schema_migrations ORDER BY version"
        ),
    }


def recorded_versions(url: str) -> list[str]:
    return [r["version"] for r in rows(url, "SELECT version FROM app.schema_migrations")]


def test_from_empty_creates_every_table_and_records_versions(empty_db_url: str) -> None:
    assert scalar(empty_db_url, "SELECT to_regnamespace('app')") is None
    known = migrations.available()
    assert known, "no migration files found"

    applied = migrations.migrate_app(empty_db_url)

    assert applied == [m.version for m in known]
    assert app_tables(empty_db_url) >= APP_TABLES
    recorded = rows(empty_db_url, "SELECT version, name FROM app.schema_migrations ORDER BY 1")
    assert recorded == [{"version": m.version, "name": m.name} for m in known]


def test_a_rerun_applies_nothing_and_changes_nothing(empty_db_url: str) -> None:
    migrations.migrate_app(empty_db_url)
    before = schema_snapshot(empty_db_url)

    assert migrations.migrate_app(empty_db_url) == []

    assert schema_snapshot(empty_db_url) == before


def test_two_migrators_at_once_both_succeed_and_record_each_version_once(
    empty_db_url: str,
) -> None:
    barrier = threading.Barrier(2)
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def migrate() -> None:
        try:
            barrier.wait(timeout=10)
            results.append(migrations.migrate_app(empty_db_url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=migrate) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    assert errors == []
    latest = [m.version for m in migrations.available()]
    # One runner applied everything, the other found nothing left to do.
    assert sorted(results, key=len) == [[], latest]
    versions = recorded_versions(empty_db_url)
    assert sorted(versions) == latest
    assert len(versions) == len(set(versions))
    assert app_tables(empty_db_url) >= APP_TABLES


BROKEN_SQL = """
CREATE TABLE app.half_done (id integer PRIMARY KEY);
INSERT INTO app.half_done VALUES (1);
ALTER TABLE app.marks ADD COLUMN half_done integer;
SELECT 1 / 0;
"""


def with_broken(monkeypatch: pytest.MonkeyPatch) -> list[migrations.Migration]:
    real = migrations.available()
    broken = migrations.Migration("9999", "broken", BROKEN_SQL)
    monkeypatch.setattr(migrations, "available", lambda: [*real, broken])
    return real


def test_a_failing_migration_leaves_nothing_of_itself(
    empty_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = with_broken(monkeypatch)

    with pytest.raises(MigrationError) as caught:
        migrations.migrate_app(empty_db_url)

    assert caught.value.details == {"version": "9999"}
    assert caught.value.code == "migration_failed"
    assert scalar(empty_db_url, "SELECT to_regclass('app.half_done')") is None
    marks_columns = rows(
        empty_db_url,
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = 'app' AND table_name = 'marks'",
    )
    assert "half_done" not in {r["column_name"] for r in marks_columns}
    # The good migrations before it each committed in their own transaction.
    assert sorted(recorded_versions(empty_db_url)) == [m.version for m in real]


def test_after_a_failure_the_lock_is_free_and_a_rerun_works(
    empty_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_broken(monkeypatch)
    with pytest.raises(MigrationError):
        migrations.migrate_app(empty_db_url)
    monkeypatch.undo()

    held = scalar(
        empty_db_url,
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = %s",
        (migrations.LOCK_KEY,),
    )
    assert held == 0
    assert migrations.migrate_app(empty_db_url) == []


def test_a_failing_migration_on_a_current_database_keeps_its_data(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with psycopg.connect(db_url) as conn:
        conn.execute("INSERT INTO app.marks (workflow_id, step) VALUES ('wf', 's1')")
    before = schema_snapshot(db_url)
    with_broken(monkeypatch)

    with pytest.raises(MigrationError):
        migrations.migrate_app(db_url)

    assert schema_snapshot(db_url) == before
    assert scalar(db_url, "SELECT count(*) FROM app.marks") == 1


def test_print_script_builds_the_same_schema(empty_db_url: str, db_url: str) -> None:
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute(migrations.script().encode())
    assert app_tables(empty_db_url) >= APP_TABLES
    printed = schema_snapshot(empty_db_url)
    migrated = schema_snapshot(db_url)
    for key in ("columns", "indexes", "constraints"):
        assert printed[key] == migrated[key], key
    assert recorded_versions(empty_db_url) == recorded_versions(db_url)
    # A runner that finds the printed schema applied has nothing left to do.
    assert migrations.migrate_app(empty_db_url) == []


def test_migrate_dbos_creates_the_dbos_system_schema(empty_db_url: str) -> None:
    assert scalar(empty_db_url, "SELECT to_regclass('dbos.workflow_status')") is None

    migrations.migrate_dbos(empty_db_url)

    assert scalar(empty_db_url, "SELECT to_regclass('dbos.workflow_status')::text") == (
        "dbos.workflow_status"
    )
    version = scalar(empty_db_url, "SELECT max(version) FROM dbos.dbos_migrations")
    assert version is not None and version > 0
    # Running it again is harmless and changes nothing.
    migrations.migrate_dbos(empty_db_url)
    assert scalar(empty_db_url, "SELECT max(version) FROM dbos.dbos_migrations") == version


def test_ensure_brings_an_empty_database_up_to_date(empty_db_url: str) -> None:
    migrations.ensure(empty_db_url)
    assert app_tables(empty_db_url) >= APP_TABLES
    assert recorded_versions(empty_db_url)[-1:] == [migrations.latest_version()]
    assert scalar(empty_db_url, "SELECT to_regclass('dbos.workflow_status')") is not None
