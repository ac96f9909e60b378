"""Exactly-once writes: a step's writes to sisu's tables commit in the same transaction as the
step's DBOS checkpoint (a DBOS datasource transaction), so a crash at any instant either keeps
both or neither, and a re-executed step replays the recorded result instead of writing again."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import psycopg
from psycopg.rows import dict_row

from sisu.db.url import sqlalchemy_url

if TYPE_CHECKING:
    from dbos import SQLAlchemyDatasource

P = ParamSpec("P")
R = TypeVar("R")

_datasource: SQLAlchemyDatasource | None = None
# Steps running at once in this process. A run waits here for its turn with no deadline,
# instead of on the pool, whose 30 s timeout under a burst would fail the step. A slot is held
# only inside a step: a run waiting for a human, or sleeping before a retry, holds none.
_slots: threading.BoundedSemaphore | None = None


def bind(url: str, *, step_slots: int) -> None:
    """Create the process's datasource; the worker calls this before `DBOS.launch()`."""
    global _datasource, _slots
    from dbos import SQLAlchemyDatasource

    from sisu.engine import DBOS_SCHEMA

    _slots = threading.BoundedSemaphore(step_slots)
    # One connection per slot, plus as many for what runs outside a slot (a step's own reads
    # of the intent, DBOS's checkpoint clean-up when a workflow completes).
    # No pre-ping: it costs a round trip per checkout, i.e. two per step. A connection lost to
    # a server restart fails its step with an OperationalError instead, which SQLAlchemy answers
    # by discarding the pool and sisu by retrying the step (a transient error).
    _datasource = SQLAlchemyDatasource.create(
        sqlalchemy_url(url),
        engine_kwargs={"pool_size": step_slots, "max_overflow": step_slots},
        schema=DBOS_SCHEMA,
    )


def run(name: str, func: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run `func` as the datasource step `name`; its writes and the checkpoint commit together."""
    if _datasource is None or _slots is None:
        raise RuntimeError("datasource not bound: call sisu.workflow.steps.datasource.bind(url)")
    # READ COMMITTED: each step writes its own run's rows, and exactly-once comes from the
    # checkpoint row committing in this transaction (a replay finds it), not from isolation.
    # SERIALIZABLE here made concurrent runs fail each other on predicate-lock false positives.
    with _slots:
        return _datasource.run_tx_step(
            {"name": name, "isolation_level": "READ COMMITTED"}, func, *args, **kwargs
        )


Cursor = psycopg.Cursor[dict[str, Any]]


def connection() -> Cursor:
    """A dict-row cursor in the current datasource transaction, for `sql/queries.sql`. A cursor,
    not the connection's own row factory: the connection goes back to a pool that DBOS reads
    its checkpoints from, and those reads expect plain tuples."""
    assert _datasource is not None
    driver_conn = _datasource.sql_session().connection().connection.driver_connection
    assert isinstance(driver_conn, psycopg.Connection)
    return driver_conn.cursor(row_factory=dict_row)


@contextmanager
def outside_transaction() -> Iterator[Cursor]:
    """A cursor in a transaction of its own, committed at exit, outside any step slot — for
    what a DBOS step reads or writes outside a datasource transaction."""
    assert _datasource is not None
    with _datasource.engine.begin() as conn:
        driver_conn = conn.connection.driver_connection
        assert isinstance(driver_conn, psycopg.Connection)
        with driver_conn.cursor(row_factory=dict_row) as cur:
            yield cur
