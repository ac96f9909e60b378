"""Which database failures a step retries: every form of a passing failure, whichever library
wrapped it, and nothing that another attempt would only repeat."""

from __future__ import annotations

import psycopg
import pytest
import sqlalchemy.exc
from psycopg import errors

from sisu.db.faults import is_transient


def _wrapped(orig: Exception) -> sqlalchemy.exc.StatementError:
    return sqlalchemy.exc.DBAPIError.instance("SELECT 1", {}, orig, psycopg.Error)


@pytest.mark.parametrize(
    "exc",
    [
        errors.DiskFull("could not extend file"),
        errors.AdminShutdown("terminating connection due to administrator command"),
        errors.CrashShutdown("terminating connection because of crash of another process"),
        errors.SerializationFailure("could not serialize access"),
        errors.TooManyConnections("sorry, too many clients already"),
        psycopg.OperationalError("connection is bad: Connection refused"),
        psycopg.InterfaceError("the connection is closed"),
        _wrapped(errors.DiskFull("could not extend file")),
        _wrapped(psycopg.OperationalError("connection failed")),
        sqlalchemy.exc.TimeoutError("QueuePool limit of size 16 overflow 16 reached"),
    ],
    ids=lambda e: type(e).__name__ + ":" + str(e)[:30],
)
def test_a_passing_database_failure_is_transient(exc: Exception) -> None:
    assert is_transient(exc)


def test_a_failure_caused_by_a_passing_one_is_transient() -> None:
    try:
        try:
            raise errors.DiskFull("could not write to file")
        except errors.DiskFull as inner:
            raise RuntimeError("recording the step failed") from inner
    except RuntimeError as outer:
        assert is_transient(outer)


@pytest.mark.parametrize(
    "exc",
    [
        errors.UniqueViolation("duplicate key value"),
        errors.UndefinedTable("relation does not exist"),
        _wrapped(errors.NotNullViolation("null value")),
        ValueError("bad plan"),
        KeyError("tasks"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_a_lasting_failure_is_not_transient(exc: Exception) -> None:
    assert not is_transient(exc)
