"""Queue policy (Walkthrough C) as an operator meets it: a real `sisu serve` over HTTP and the
installed `sisu` — lanes and priority, deduplication (reject and join), partitions, the
fail-closed workload caps (zero rows written) and the operator's view of the queues.

Most of it runs with no worker, so that runs stay queued: that is what deduplication and the
queue view are about. The partition test brings its own worker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.cli import fast_retry_env, run_sisu
from tests.support.db import rows, scalar, table_counts
from tests.support.envelopes import cli_error, cli_ok, error_of
from tests.support.runs import fast_backend, run_row, start_intent, wait_run_done, workflow_row
from tests.support.runview import COUNTED_TABLES
from tests.support.serve import serve_client
from tests.support.workers import INTENT_QUEUE, PARTITIONED_QUEUE, running_worker


@pytest.fixture(scope="module")
def qp_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("qp")


@pytest.fixture(scope="module")
def qp_db(module_db_url: str) -> str:
    """This module's own migrated database (conftest's `module_db_url`)."""
    return module_db_url


@pytest.fixture(scope="module")
def qp_env(qp_db: str, qp_tmp: Path) -> dict[str, str]:
    return fast_retry_env(qp_db, qp_tmp / "home")


@pytest.fixture(scope="module")
def api(qp_env: dict[str, str], qp_tmp: Path) -> Iterator[httpx.Client]:
    with serve_client(qp_env, qp_tmp / "logs" / "serve.log") as client:
        yield client


def new_intent(api: httpx.Client, goal: str = "queue policy") -> str:
    r = api.post("/intents", json={"goal": goal, "inputs": {}, "constraints": {}})
    assert r.status_code == 201, r.text
    return str(r.json()["intentId"])


def trigger(
    api: httpx.Client, intent_id: str, body: dict[str, Any] | None = None
) -> httpx.Response:
    return api.post(f"/intents/{intent_id}/run", json=body or {})


def new_service_intent(backend: Any, goal: str) -> str:
    from sisu.contracts.runs import IntentCreate
    from sisu.service import intents

    return intents.create_intent(backend, IntentCreate(goal=goal)).intent_id


def has_run(url: str, run_id: str) -> tuple[int, int]:
    """(app.runs rows, dbos.workflow_status rows) for this id."""
    return (
        int(scalar(url, "SELECT count(*) FROM app.runs WHERE id = %s", (run_id,))),
        int(
            scalar(
                url, "SELECT count(*) FROM dbos.workflow_status WHERE workflow_uuid = %s", (run_id,)
            )
        ),
    )


def cap_field_ok(field: str, name: str) -> bool:
    return field in (name, f"workload.{name}")


# --- deduplication ---------------------------------------------------------------------------


def test_dedupe_rejects_a_second_trigger_and_join_returns_the_first_run(
    api: httpx.Client, qp_db: str
) -> None:
    first, second, third = new_intent(api), new_intent(api), new_intent(api)

    r = trigger(api, first, {"deduplicationId": "nightly-build"})
    assert r.status_code == 202, r.text
    assert r.json()["runId"] == first

    before = table_counts(qp_db, COUNTED_TABLES)
    body = error_of(
        trigger(api, second, {"deduplicationId": "nightly-build"}), 409, "duplicate_run"
    )
    assert body["details"]["existingRunId"] == first
    assert has_run(qp_db, second) == (0, 0)
    assert table_counts(qp_db, COUNTED_TABLES) == before

    r = trigger(api, third, {"deduplicationId": "nightly-build", "dedupePolicy": "join"})
    assert r.status_code == 202, r.text
    assert r.json()["runId"] == first
    assert r.json()["workflowId"] == first
    assert table_counts(qp_db, COUNTED_TABLES) == before

    # The refused intent is not spoiled: without the id it gets its own run.
    r = trigger(api, second)
    assert r.status_code == 202, r.text
    assert r.json()["runId"] == second
    assert has_run(qp_db, second) == (1, 1)


def test_dedupe_from_the_cli_rejects_and_joins(qp_env: dict[str, str], qp_db: str) -> None:
    with fast_backend(qp_db) as b:
        first = start_intent(b, "cli dedupe", deduplication_id="cli-dedupe")
        other_id = new_service_intent(b, "cli dedupe 2")

    before = table_counts(qp_db, COUNTED_TABLES)
    body = cli_error(
        run_sisu(["intent", "run", other_id, "--dedupe-id", "cli-dedupe", "--json"], qp_env),
        5,
        "duplicate_run",
    )
    assert body["details"]["existingRunId"] == first
    assert has_run(qp_db, other_id) == (0, 0)
    assert table_counts(qp_db, COUNTED_TABLES) == before

    joined = cli_ok(
        run_sisu(
            ["intent", "run", other_id, "--dedupe-id", "cli-dedupe", "--join", "--json"], qp_env
        )
    )
    assert joined["runId"] == first
    assert table_counts(qp_db, COUNTED_TABLES) == before
    assert has_run(qp_db, other_id) == (0, 0)


# --- fail-closed caps ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "cap"),
    [("concurrency", 999, 16), ("steps", 65, 64), ("sandboxMinutes", 61, 60)],
)
def test_a_workload_over_a_cap_is_refused_with_zero_writes(
    api: httpx.Client, qp_db: str, field: str, value: int, cap: int
) -> None:
    intent_id = new_intent(api)
    before = table_counts(qp_db, COUNTED_TABLES)
    body = error_of(
        trigger(api, intent_id, {"workload": {field: value}}), 400, "queue_policy_violation"
    )
    details = body["details"]
    assert cap_field_ok(details["field"], field), details
    assert details["value"] == value
    assert details["cap"] == cap
    assert table_counts(qp_db, COUNTED_TABLES) == before
    assert has_run(qp_db, intent_id) == (0, 0)

    # At the cap is allowed: the cap is a limit, not an off-by-one.
    r = trigger(api, intent_id, {"workload": {field: cap}})
    assert r.status_code == 202, r.text


@pytest.mark.parametrize(
    ("field", "value", "cap"), [("maxModelRequests", 51, 50), ("maxTokens", 500_001, 500_000)]
)
def test_a_model_budget_over_its_cap_is_refused_at_run_start_with_zero_writes(
    api: httpx.Client, qp_db: str, field: str, value: int, cap: int
) -> None:
    r = api.post("/intents", json={"goal": "budget", "constraints": {field: value}})
    assert r.status_code == 201, r.text
    intent_id = r.json()["intentId"]
    before = table_counts(qp_db, COUNTED_TABLES)
    body = error_of(trigger(api, intent_id), 400, "queue_policy_violation")
    assert body["details"] == {"field": f"constraints.{field}", "value": value, "cap": cap}
    assert table_counts(qp_db, COUNTED_TABLES) == before
    assert has_run(qp_db, intent_id) == (0, 0)


@pytest.mark.parametrize("value", [0, -1, 2.5, "10", True])
def test_a_model_budget_that_is_not_a_positive_whole_number_is_a_validation_error(
    api: httpx.Client, qp_db: str, value: Any
) -> None:
    r = api.post("/intents", json={"goal": "budget", "constraints": {"maxTokens": value}})
    assert r.status_code == 201, r.text
    intent_id = r.json()["intentId"]
    body = error_of(trigger(api, intent_id), 400, "validation_error")
    assert body["details"][0]["field"] == "constraints.maxTokens"
    assert has_run(qp_db, intent_id) == (0, 0)


def test_a_model_budget_within_its_cap_starts_the_run(api: httpx.Client, qp_db: str) -> None:
    r = api.post(
        "/intents", json={"goal": "budget", "constraints": {"maxModelRequests": 50, "maxTokens": 1}}
    )
    intent_id = r.json()["intentId"]
    assert trigger(api, intent_id).status_code == 202
    assert has_run(qp_db, intent_id) == (1, 1)


def test_caps_come_from_the_environment_of_the_serve_process(
    qp_env: dict[str, str], qp_db: str, qp_tmp: Path
) -> None:
    env = {**qp_env, "SISU_CAP_CONCURRENCY": "2"}
    with serve_client(env, qp_tmp / "logs" / "serve-cap2.log") as api:
        intent_id = new_intent(api)
        before = table_counts(qp_db, COUNTED_TABLES)
        body = error_of(
            trigger(api, intent_id, {"workload": {"concurrency": 3}}),
            400,
            "queue_policy_violation",
        )
        assert cap_field_ok(body["details"]["field"], "concurrency")
        assert (body["details"]["value"], body["details"]["cap"]) == (3, 2)
        assert table_counts(qp_db, COUNTED_TABLES) == before
        r = trigger(api, intent_id, {"workload": {"concurrency": 2}})
        assert r.status_code == 202, r.text


def test_queue_policy_json_shows_the_caps_in_force(qp_env: dict[str, str]) -> None:
    default = cli_ok(run_sisu(["queue", "policy", "--json"], qp_env))
    assert default["caps"] == {
        "concurrency": 16,
        "steps": 64,
        "sandboxMinutes": 60,
        "modelRequests": 50,
        "tokens": 500_000,
    }
    assert default["lanes"] == {"interactive": 10, "batch": 100}

    env = {**qp_env, "SISU_CAP_STEPS": "8", "SISU_CAP_SANDBOX_MINUTES": "5",
           "SISU_CAP_MODEL_REQUESTS": "3", "SISU_CAP_TOKENS": "1000"}  # fmt: skip
    changed = cli_ok(run_sisu(["queue", "policy", "--json"], env))
    assert changed["caps"] == {
        "concurrency": 16,
        "steps": 8,
        "sandboxMinutes": 5,
        "modelRequests": 3,
        "tokens": 1000,
    }


# --- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"priority": 0},
        {"priority": 1001},
        {"priority": "5"},
        {"priority": 2.5},
        {"lane": "fast"},
        {"dedupePolicy": "merge", "deduplicationId": "x"},
        {"workload": {"concurrency": "4"}},
        {"workload": {"gpus": 1}},
        {"urgent": True},
    ],
    ids=[
        "priority-0",
        "priority-1001",
        "priority-string",
        "priority-float",
        "lane-fast",
        "dedupe-policy",
        "workload-string",
        "workload-unknown",
        "unknown-field",
    ],
)
def test_invalid_run_requests_are_validation_errors_with_zero_writes(
    api: httpx.Client, qp_db: str, body: dict[str, Any]
) -> None:
    intent_id = new_intent(api)
    before = table_counts(qp_db, COUNTED_TABLES)
    error_of(trigger(api, intent_id, body), 400, "validation_error")
    assert table_counts(qp_db, COUNTED_TABLES) == before
    assert has_run(qp_db, intent_id) == (0, 0)


def test_dedupe_and_partition_together_are_refused(api: httpx.Client, qp_db: str) -> None:
    intent_id = new_intent(api)
    before = table_counts(qp_db, COUNTED_TABLES)
    r = trigger(api, intent_id, {"deduplicationId": "d1", "queuePartitionKey": "tenant-a"})
    assert r.status_code == 400, r.text
    assert r.json()["error"] in {"validation_error", "queue_policy_violation"}
    assert table_counts(qp_db, COUNTED_TABLES) == before


@pytest.mark.parametrize(
    ("flags", "field"),
    [
        (["--priority", "0"], "priority"),
        (["--priority", "abc"], "priority"),
        (["--lane", "fast"], "lane"),
    ],
    ids=["priority-0", "priority-abc", "lane-fast"],
)
def test_invalid_cli_flags_exit_2_with_zero_writes(
    qp_env: dict[str, str], qp_db: str, api: httpx.Client, flags: list[str], field: str
) -> None:
    intent_id = new_intent(api)
    before = table_counts(qp_db, COUNTED_TABLES)
    body = cli_error(
        run_sisu(["intent", "run", intent_id, *flags, "--json"], qp_env), 2, "validation_error"
    )
    assert any(d.get("field") == field for d in body["details"]), body
    assert table_counts(qp_db, COUNTED_TABLES) == before


def test_every_queue_flag_has_help(qp_env: dict[str, str]) -> None:
    result = run_sisu(["intent", "run", "--help"], qp_env)
    assert result.exit_code == 0, result.stderr
    for flag in ("--lane", "--priority", "--dedupe-id", "--join", "--partition-key", "--workload"):
        assert flag in result.stdout, flag


# --- lanes and priority ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "lane", "priority"),
    [
        ({}, "batch", 100),
        ({"lane": "batch"}, "batch", 100),
        ({"lane": "interactive"}, "interactive", 10),
        ({"lane": "interactive", "priority": 500}, "interactive", 500),
        ({"lane": "batch", "priority": 1}, "batch", 1),
        ({"priority": 1000}, "batch", 1000),
    ],
    ids=["default", "batch", "interactive", "interactive-explicit", "batch-explicit", "max"],
)
def test_lane_and_priority_are_stored_and_shown(
    api: httpx.Client, qp_db: str, body: dict[str, Any], lane: str, priority: int
) -> None:
    intent_id = new_intent(api)
    r = trigger(api, intent_id, body)
    assert r.status_code == 202, r.text

    row = run_row(qp_db, intent_id)
    assert (row["lane"], row["priority"]) == (lane, priority)
    wf = workflow_row(qp_db, intent_id)
    assert wf is not None
    assert wf["priority"] == priority
    assert wf["queue_name"] == INTENT_QUEUE

    view = api.get(f"/runs/{intent_id}")
    assert view.status_code == 200, view.text
    assert (view.json()["lane"], view.json()["priority"]) == (lane, priority)
    listed = api.get("/runs", params={"limit": 1000})
    assert listed.status_code == 200
    mine = [s for s in listed.json()["items"] if s["runId"] == intent_id]
    assert [(s["lane"], s["priority"]) for s in mine] == [(lane, priority)]


# --- partitions ------------------------------------------------------------------------------


def test_a_partition_key_sends_the_run_to_the_partitioned_queue(
    api: httpx.Client, qp_db: str
) -> None:
    intent_id = new_intent(api)
    r = trigger(api, intent_id, {"queuePartitionKey": "tenant-a", "lane": "interactive"})
    assert r.status_code == 202, r.text
    wf = workflow_row(qp_db, intent_id)
    assert wf is not None
    assert (wf["queue_name"], wf["queue_partition_key"]) == (PARTITIONED_QUEUE, "tenant-a")
    assert wf["priority"] == 10
    assert run_row(qp_db, intent_id)["queue_name"] == PARTITIONED_QUEUE


def test_with_a_worker_partitioned_runs_complete_and_finished_runs_free_their_dedupe_id(
    db_url: str, tmp_path: Path
) -> None:
    env = fast_retry_env(db_url, tmp_path / "home")
    with fast_backend(db_url) as b:
        tenant_run = new_service_intent(b, "tenant work")
        deduped = start_intent(b, "deduped work", deduplication_id="release-me")
        later = new_service_intent(b, "later work")
    with running_worker(
        db_url,
        tmp_path,
        name="part",
        queues=(INTENT_QUEUE, PARTITIONED_QUEUE),
        fast_retries=True,
        kill=True,
    ) as worker:
        started = cli_ok(
            run_sisu(["intent", "run", tenant_run, "--partition-key", "tenant-b", "--json"], env)
        )
        assert started["runId"] == tenant_run
        wait_run_done(db_url, tenant_run, worker=worker, timeout=30)
        wait_run_done(db_url, deduped, worker=worker, timeout=30)

        # The id was held only while its run was queued or running.
        with fast_backend(db_url) as b:
            from sisu.contracts.runs import RunRequest
            from sisu.service import intents

            again = intents.start_run(b, later, RunRequest(deduplication_id="release-me"))
        assert again.run_id == later
        wait_run_done(db_url, later, worker=worker, timeout=30)

    wf = workflow_row(db_url, tenant_run)
    assert wf is not None
    assert (wf["queue_name"], wf["queue_partition_key"], wf["status"]) == (
        PARTITIONED_QUEUE,
        "tenant-b",
        "SUCCESS",
    )
    assert run_row(db_url, tenant_run)["queue_name"] == PARTITIONED_QUEUE


# --- the operator's view ---------------------------------------------------------------------


def test_queue_list_shows_depth_by_queue_lane_and_status(db_url: str, tmp_path: Path) -> None:
    with fast_backend(db_url) as b:
        for _ in range(2):
            start_intent(b, "batch one")
        start_intent(b, "interactive one", lane="interactive")
        start_intent(b, "tenant one", queue_partition_key="tenant-c")
        start_intent(b, "tenant two", queue_partition_key="tenant-c")
    env = fast_retry_env(db_url, tmp_path / "home")
    listed = cli_ok(run_sisu(["queue", "list", "--json"], env))
    got = {
        (q["queue"], q["lane"], q["partition"], q["status"]): q["count"] for q in listed["queues"]
    }
    assert got == {
        (INTENT_QUEUE, "batch", None, "ENQUEUED"): 2,
        (INTENT_QUEUE, "interactive", None, "ENQUEUED"): 1,
        (PARTITIONED_QUEUE, "batch", "tenant-c", "ENQUEUED"): 2,
    }, listed
    for q in listed["queues"]:
        assert q["oldestAgeSeconds"] >= 0
    assert rows(db_url, "SELECT count(*) AS n FROM app.runs WHERE status = 'queued'") == [{"n": 5}]
