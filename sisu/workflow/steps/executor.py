"""The built-in executor: the mock outside system. It stands for a real external service, so it
writes on its own connection, outside the step's transaction — a delivery it received stays
received even if the step then crashes, exactly like a real remote effect. It counts every
delivery per idempotency key (`seen_count`), so a duplicate effect cannot hide."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row

from sisu import metrics
from sisu.db.queries import q
from sisu.db.url import sqlalchemy_url
from sisu.workflow.steps.ports import Delivery, Receipt


class MockOutsideSystem:
    """Its own connection pool, as a remote system has its own: a step holding a datasource
    connection must never wait on the same pool for the outside system (that deadlocks under
    load)."""

    def __init__(self, url: str, pool_size: int) -> None:
        import sqlalchemy as sa

        # Each call is one statement, atomic on its own: autocommit spares a BEGIN and a COMMIT
        # round trip, and no pre-ping spares another (a lost connection fails the step, which
        # is retried).
        self._engine = sa.create_engine(
            sqlalchemy_url(url), pool_size=pool_size, max_overflow=0, isolation_level="AUTOCOMMIT"
        )

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Cursor[dict[str, Any]]]:
        with self._engine.connect() as conn:
            driver = conn.connection.driver_connection
            assert isinstance(driver, psycopg.Connection)
            with driver.cursor(row_factory=dict_row) as cur:
                yield cur

    def lookup(self, receipt_key: str) -> Receipt | None:
        with self._connection() as conn:
            row = conn.execute(q("receipt_lookup"), {"receipt_key": receipt_key}).fetchone()
        return Receipt(row["receipt_key"], row["seen_count"]) if row else None

    def deliver(self, delivery: Delivery) -> Receipt:
        with self._connection() as conn:
            row = conn.execute(
                q("receipt_deliver"),
                {
                    "receipt_key": delivery.receipt_key,
                    "run_id": delivery.run_id,
                    "step_id": delivery.step_id,
                    "task_key": delivery.task_key,
                    "payload_hash": delivery.payload_hash,
                },
            ).fetchone()
        assert row is not None
        metrics.delivery("mock", "delivered")
        return Receipt(row["receipt_key"], row["seen_count"])
