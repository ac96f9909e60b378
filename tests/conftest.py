"""Test databases: one PostgreSQL server per session (embedded by default,
SISU_TEST_DATABASE_URL when set), a template database migrated once, and a fresh database
cloned from it for every test that asks for `db_url`."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from psycopg import sql

from sisu.db import embedded, migrations
from tests.support.cli import sisu_env_for
from tests.support.db import admin_execute, with_database

if TYPE_CHECKING:
    from sisu.service.backend import Backend

TIERS = ("unit", "integration", "acceptance", "drills")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each test is marked with its tier, from the folder it lives in."""
    for item in items:
        parts = Path(str(item.fspath)).parts
        for tier in TIERS:
            if tier in parts:
                item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """A URL on the test server's maintenance database."""
    external = os.environ.get("SISU_TEST_DATABASE_URL")
    if external:
        yield external
        return
    # A short path: the server's Unix socket lives in its data directory.
    home = Path(tempfile.mkdtemp(prefix="sisu-t-", dir="/tmp"))
    try:
        info = embedded.start(home)
        yield info.url("postgres")
    finally:
        embedded.destroy(home)  # as root its data lives outside home, under /var/lib/sisu/pg
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def template_db(pg_admin_url: str) -> Iterator[str]:
    """A database with both schemas migrated, cloned per test."""
    name = f"sisu_tmpl_{uuid.uuid4().hex[:8]}"
    admin_execute(pg_admin_url, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = with_database(pg_admin_url, name)
    migrations.migrate_app(url)
    migrations.migrate_dbos(url)
    yield name
    admin_execute(
        pg_admin_url,
        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)),
    )


@contextmanager
def _scratch_database(admin_url: str, prefix: str, template: str | None = None) -> Iterator[str]:
    """A new database (cloned from `template` when given), dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template is not None:
        create = sql.SQL("{} TEMPLATE {}").format(create, sql.Identifier(template))
    admin_execute(admin_url, create)
    try:
        yield with_database(admin_url, name)
    finally:
        admin_execute(
            admin_url,
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)),
        )


@pytest.fixture
def empty_db_url(pg_admin_url: str) -> Iterator[str]:
    """A fresh database with no schema at all."""
    with _scratch_database(pg_admin_url, "sisu_e") as url:
        yield url


@pytest.fixture
def db_url(pg_admin_url: str, template_db: str) -> Iterator[str]:
    """A fresh, fully migrated database for this test alone."""
    with _scratch_database(pg_admin_url, "sisu_t", template_db) as url:
        yield url


@pytest.fixture
def sisu_env(db_url: str, tmp_path: Path) -> dict[str, str]:
    """Environment for a `sisu` subprocess bound to this test's database."""
    return sisu_env_for(db_url, tmp_path / "home")


@pytest.fixture(scope="module")
def module_db_url(pg_admin_url: str, template_db: str) -> Iterator[str]:
    """A fresh, fully migrated database shared by one module's tests: one expensive run (a
    drill), many oracles read from its rows."""
    with _scratch_database(pg_admin_url, "sisu_m", template_db) as url:
        yield url


@pytest.fixture(scope="module")
def module_sisu_env(module_db_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment for a `sisu` subprocess bound to `module_db_url`."""
    return sisu_env_for(module_db_url, tmp_path_factory.mktemp("home"))


@pytest.fixture
def backend(db_url: str) -> Iterator[Backend]:
    """The service layer on this test's database, in this process (app version v1)."""
    from sisu.service.backend import Backend

    b = Backend(db_url, app_version="v1")
    try:
        yield b
    finally:
        b.close()
