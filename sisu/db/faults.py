"""Which database failures are worth another try: the server restarting or gone, a lost
connection, a full disk, a serialization failure, a pool with no free connection in time. One
answer for every caller (steps, the workflow, the worker's threads), whichever library raised."""

from __future__ import annotations

import psycopg

# SQLSTATE classes of conditions that pass: connection exceptions, transaction rollbacks
# (serialization failures, deadlocks), insufficient resources (disk full, out of memory, too
# many connections), operator intervention (admin or crash shutdown, cannot connect now) and
# system errors (I/O).
TRANSIENT_SQLSTATE_CLASSES = ("08", "40", "53", "57", "58")


def _one(exc: BaseException) -> bool:
    import sqlalchemy.exc

    if isinstance(exc, sqlalchemy.exc.TimeoutError):  # no pooled connection in time
        return True
    if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated:
        return True
    # OperationalError covers every failure to connect or to keep a connection (no SQLSTATE),
    # and the SQLSTATE classes above; InterfaceError is a connection already closed.
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return True
    sqlstate = getattr(exc, "sqlstate", None)
    return isinstance(sqlstate, str) and sqlstate[:2] in TRANSIENT_SQLSTATE_CLASSES


def is_transient(exc: BaseException) -> bool:
    """True when `exc`, or what caused it (SQLAlchemy wraps the driver's error), is a database
    failure that another attempt may not meet."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _one(current):
            return True
        orig = getattr(current, "orig", None)
        if isinstance(orig, BaseException) and _one(orig):
            return True
        current = current.__cause__ or current.__context__
    return False
