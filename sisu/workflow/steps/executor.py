"""The built-in executor: the mock outside system. It stands for a real external service, so it
writes on its own connection, outside the step's transaction — a delivery it received stays
received even if the step then crashes, exactly like a real remote effect. It counts every
delivery per idempotency key (`seen_count`), so a duplicate effect cannot hide."""

from __future__ import annotations

from sisu.db.queries import q
from sisu.workflow.steps import datasource
from sisu.workflow.steps.ports import Delivery, Receipt


class MockOutsideSystem:
    def lookup(self, receipt_key: str) -> Receipt | None:
        with datasource.outside_transaction() as conn:
            row = conn.execute(q("receipt_lookup"), {"receipt_key": receipt_key}).fetchone()
        return Receipt(row["receipt_key"], row["seen_count"]) if row else None

    def deliver(self, delivery: Delivery) -> Receipt:
        with datasource.outside_transaction() as conn:
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
        return Receipt(row["receipt_key"], row["seen_count"])
