"""Start-up cost of the commands that read the database: they connect with psycopg alone and
never load the engine (the unit tier's `test_startup` covers the commands that need none)."""

from __future__ import annotations

import subprocess

import pytest

from tests.support.cli import SISU
from tests.unit.test_startup import imported

# A read command connects with psycopg alone: SQLAlchemy (and DBOS, the web stack) are for
# workers, the api-shim and commands that enqueue.
READ_HEAVY = ("sqlalchemy", "dbos", "fastapi", "uvicorn", "prometheus_client", "opentelemetry")


@pytest.mark.parametrize(
    "args",
    [
        ["run", "show", "no-such-run", "--json"],
        ["run", "list", "--json"],
        ["run", "inbox"],
        ["top", "--once", "--json"],
    ],
    ids=lambda a: " ".join(a),
)
def test_read_commands_import_no_engine(args: list[str], sisu_env: dict[str, str]) -> None:
    proc = subprocess.run(
        [SISU, *args],
        capture_output=True,
        text=True,
        env={**sisu_env, "PYTHONPROFILEIMPORTTIME": "1"},
        timeout=60,
        check=False,
    )
    assert proc.returncode in (0, 4), proc.stderr[-2000:]
    names = imported(proc.stderr)
    assert "psycopg" in names  # it did reach the database
    assert names.isdisjoint(READ_HEAVY), sorted(names & set(READ_HEAVY))
