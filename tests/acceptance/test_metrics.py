"""`GET /metrics` as Prometheus scrapes it (issue 16), on a real `sisu worker`'s admin port and
a real `sisu serve`, over real HTTP, each page parsed whole by prometheus_client's parser: what
the worker counts equals what its runs left in the rows (runs ended, step attempts), the gauges
equal what the database holds (queue depth, runs waiting for a human, live heartbeats), the
shim counts its requests by route template — and a model compiler's tokens and a webhook's
deliveries are counted as `app.opencode_calls` and `app.deliveries` record them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from sisu import metrics
from sisu.drills.processes import WorkerProcess
from tests.support.cli import FAST_BACKOFF, fast_retry_env
from tests.support.db import rows, scalar
from tests.support.fake_openai import (
    FakeOpenAI,
    FakeRequest,
    output_tool_name,
    tool_call_completion,
)
from tests.support.fake_webhook import FakeWebhook
from tests.support.metrics import Page, scrape
from tests.support.runs import (
    ASK_GOAL,
    fast_backend,
    start_intent,
    wait_run_done,
    wait_run_status,
    wait_workflow_status,
)
from tests.support.serve import ServeProcess, running_serve
from tests.support.workers import PARTITIONED_QUEUE, intent_worker, wait_worker_ready

FAULTY = {"faults": {"ExecuteST": {"kind": "net_timeout", "times": 99}}}
SUCCEEDING = 3
PARTITIONED = 2


def worker_process(url: str, tmp_path: Path, name: str, *args: str, **env: str) -> WorkerProcess:
    """A real worker on the intent queue only (a run on the partitioned queue stays there),
    whose page reads the database at every scrape (no cache: the test compares at once)."""
    return intent_worker(
        url,
        tmp_path,
        name,
        *args,
        env={
            "SISU_STEP_BACKOFF_SECONDS": FAST_BACKOFF,
            "SISU_METRICS_CACHE_SECONDS": "0",
            **env,
        },
    )


def admin_url(url: str, worker: WorkerProcess) -> str:
    port = scalar(
        url,
        "SELECT admin_port FROM app.workers WHERE executor_id = %s AND pid = %s",
        (worker.executor_id, worker.pid),
    )
    return f"http://127.0.0.1:{port}/metrics"


def attempts_by_row(url: str) -> dict[tuple[str, str], int]:
    """(step, outcome) → attempt rows, the outcome as the worker labels it."""
    found = rows(
        url,
        "SELECT step_id, CASE WHEN phase = 'succeeded' THEN 'succeeded' "
        "WHEN error ->> 'code' = 'transient' THEN 'transient' ELSE 'failed' END AS outcome, "
        "count(*)::int AS n FROM app.run_steps GROUP BY 1, 2",
    )
    return {(r["step_id"], r["outcome"]): r["n"] for r in found}


def assert_steps_match_rows(page: Page, url: str) -> None:
    """Every step attempt row is one observation of the step's histogram and one count of its
    outcome, and the other way round."""
    by_row = attempts_by_row(url)
    for step in metrics.STEPS:
        row_count = sum(n for (s, _), n in by_row.items() if s == step)
        assert page.value("sisu_step_duration_seconds_count", step=step) == row_count, step
        assert page.value("sisu_step_duration_seconds_bucket", step=step, le="+Inf") == row_count
        for outcome in metrics.OUTCOMES:
            counted = page.value("sisu_step_attempts_total", step=step, outcome=outcome)
            assert counted == by_row.get((step, outcome), 0), (step, outcome)
        if row_count:
            assert page.value("sisu_step_duration_seconds_sum", step=step) > 0, step
    assert set(by_row) <= {(s, o) for s in metrics.STEPS for o in metrics.OUTCOMES}, by_row


@dataclass
class Fleet:
    url: str
    worker: WorkerProcess
    shim: ServeProcess
    ids: dict[str, list[str]]

    def worker_page(self) -> Page:
        return scrape(admin_url(self.url, self.worker))

    def shim_page(self) -> Page:
        return scrape(self.shim.base_url + "/metrics")


def create_and_run(api: httpx.Client, body: dict[str, Any], run: dict[str, Any] | None) -> str:
    created = api.post("/intents", json=body)
    assert created.status_code == 201, created.text
    intent_id = str(created.json()["intentId"])
    path = f"/intents/{intent_id}/run"
    started = api.post(path, json=run) if run else api.post(path)
    assert started.status_code == 202, started.text
    return intent_id


@pytest.fixture(scope="module")
def fleet(module_db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """A worker and a shim; through the shim's HTTP: runs that succeed, one that runs out of
    attempts, one waiting for a human, and two on the partitioned queue no worker takes."""
    url = module_db_url
    tmp = tmp_path_factory.mktemp("metrics")
    worker = worker_process(url, tmp, "metrics").start()
    env = fast_retry_env(url, tmp / "home", SISU_METRICS_CACHE_SECONDS="0")
    try:
        with running_serve(env, tmp / "logs" / "serve.log") as shim:
            shim.wait_responding()
            wait_worker_ready(url, worker)
            ids: dict[str, list[str]] = {"ok": [], "faulty": [], "ask": [], "parked": []}
            with httpx.Client(base_url=shim.base_url, timeout=30) as api:
                for i in range(SUCCEEDING):
                    body = {"goal": f"deliver {i}", "inputs": {"tasks": 2}}
                    ids["ok"].append(create_and_run(api, body, None))
                ids["faulty"].append(create_and_run(api, {"goal": "flaky", "inputs": FAULTY}, None))
                ids["ask"].append(create_and_run(api, {"goal": ASK_GOAL}, None))
                for i in range(PARTITIONED):
                    ids["parked"].append(
                        create_and_run(api, {"goal": f"parked {i}"}, {"queuePartitionKey": "t1"})
                    )
                assert api.get("/runs/no-such-run").status_code == 404
                assert api.get("/no/such/route").status_code == 404
            for rid in ids["ok"]:
                wait_run_done(url, rid, worker=worker)
            [faulty] = ids["faulty"]
            wait_run_status(url, faulty, "retries_exceeded", worker=worker)
            wait_workflow_status(url, faulty, "ERROR")  # the workflow went on past finish_run
            wait_run_status(url, ids["ask"][0], "waiting_input", worker=worker)
            yield Fleet(url, worker, shim, ids)
    finally:
        worker.kill()  # a run waits for a human: a graceful stop would wait out its grace


def test_the_worker_counts_the_runs_it_ended(fleet: Fleet) -> None:
    page = fleet.worker_page()
    assert page.types["sisu_runs"] == "counter"
    ended = {
        r["status"]: r["n"]
        for r in rows(
            fleet.url,
            "SELECT r.status, count(*)::int AS n FROM app.runs r "
            "JOIN dbos.workflow_status w ON w.workflow_uuid = r.id "
            "WHERE w.executor_id = %s GROUP BY r.status",
            (fleet.worker.executor_id,),
        )
    }
    assert ended["succeeded"] == SUCCEEDING
    assert ended["retries_exceeded"] == 1
    for status in metrics.ENDED_STATUSES:
        assert page.value("sisu_runs_total", status=status) == ended.get(status, 0), status


def test_the_step_histograms_match_the_attempt_rows(fleet: Fleet) -> None:
    page = fleet.worker_page()
    assert page.types["sisu_step_duration_seconds"] == "histogram"
    assert_steps_match_rows(page, fleet.url)
    # The faulty run's three ExecuteST attempts are there, as transient.
    assert page.value("sisu_step_attempts_total", step="ExecuteST", outcome="transient") == 3
    # Two tasks per succeeding run, each delivered once to the mock outside system.
    delivered = scalar(fleet.url, "SELECT sum(seen_count)::int FROM app.mock_receipts")
    assert delivered == 2 * SUCCEEDING
    assert page.value("sisu_deliveries_total", executor="mock", outcome="delivered") == delivered


def database_gauges(url: str) -> dict[str, Any]:
    """What the gauges must say, read from the database now."""
    in_flight = {
        r["status"]: r["n"]
        for r in rows(
            url,
            "SELECT status, count(*)::int AS n FROM app.runs "
            "WHERE status IN ('queued', 'running', 'waiting_input') GROUP BY status",
        )
    }
    enqueued = {
        (r["queue_name"], r["lane"]): r["n"]
        for r in rows(
            url,
            "SELECT w.queue_name, r.lane, count(*)::int AS n FROM dbos.workflow_status w "
            "JOIN app.runs r ON r.id = w.workflow_uuid WHERE w.status = 'ENQUEUED' "
            "GROUP BY 1, 2",
        )
    }
    live = {
        r["executor_id"]
        for r in rows(
            url,
            "SELECT executor_id FROM app.workers WHERE stopped_at IS NULL "
            "AND heartbeat_at > now() - interval '10 seconds'",
        )
    }
    return {"in_flight": in_flight, "enqueued": enqueued, "live": live}


@pytest.mark.parametrize("which", ["worker", "shim"])
def test_the_database_gauges_match_the_database(fleet: Fleet, which: str) -> None:
    page = fleet.worker_page() if which == "worker" else fleet.shim_page()
    want = database_gauges(fleet.url)
    assert want["in_flight"] == {"waiting_input": 1, "queued": PARTITIONED}
    assert want["enqueued"] == {(PARTITIONED_QUEUE, "batch"): PARTITIONED}
    assert page.value("sisu_database_up") == 1
    assert page.value("sisu_runs_waiting_input") == want["in_flight"]["waiting_input"]
    assert page.by_label("sisu_runs_in_flight", "status") == {
        s: want["in_flight"].get(s, 0) for s in metrics.IN_FLIGHT_STATUSES
    }
    depth = {}
    for labels, value in page.series("sisu_queue_depth").items():
        d = dict(labels)
        depth[(d["queue"], d["lane"])] = value
    assert {k: v for k, v in depth.items() if v} == want["enqueued"]
    assert page.value("sisu_queue_oldest_age_seconds", queue=PARTITIONED_QUEUE, lane="batch") > 0
    ages = page.by_label("sisu_worker_heartbeat_age_seconds", "executor_id")
    assert set(ages) == want["live"] == {fleet.worker.executor_id}


def test_the_shim_counts_requests_by_route_template(fleet: Fleet) -> None:
    page = fleet.shim_page()
    runs = len([rid for group in fleet.ids.values() for rid in group])
    count = page.get
    assert count("sisu_http_requests_total", method="POST", route="/intents", status="201") == runs
    assert (
        count(
            "sisu_http_requests_total",
            method="POST",
            route="/intents/{intent_id}/run",
            status="202",
        )
        == runs
    )
    assert (
        count("sisu_http_requests_total", method="GET", route="/runs/{run_id}", status="404") == 1
    )
    assert (
        count("sisu_http_requests_total", method="GET", route=metrics.UNMATCHED_ROUTE, status="404")
        == 1
    )
    # Never a raw path, never a run id: every route label is a template the shim serves.
    routes = {dict(k)["route"] for k in page.series("sisu_http_requests_total")}
    served = set(httpx.get(fleet.shim.base_url + "/openapi.json", timeout=10).json()["paths"])
    assert routes <= served | {metrics.UNMATCHED_ROUTE}, routes
    assert "/metrics" in served
    assert page.value("sisu_http_request_duration_seconds_count", method="POST",
                      route="/intents") == runs  # fmt: skip


KEY = "sk-sisu-metrics-test"
PLAN = {"summary": "Greet.", "files": [], "tests": [], "tasks": ["announce", "archive"]}


def plan_answer(request: FakeRequest) -> dict[str, Any]:
    return tool_call_completion(
        output_tool_name(request), PLAN, prompt_tokens=120, completion_tokens=30
    )


def test_model_tokens_and_webhook_deliveries_are_counted_as_recorded(
    db_url: str, tmp_path: Path
) -> None:
    """A worker planning with a model (a fake OpenAI-compatible server) and delivering to a
    webhook that answers the first POST 503: the tokens are those of `app.opencode_calls`, and
    every POST `app.deliveries` counted is counted once, by its outcome."""
    with FakeOpenAI(respond=plan_answer, api_key=KEY) as model, FakeWebhook() as hook:
        hook.answer(503, times=1)
        worker = worker_process(
            db_url,
            tmp_path,
            "llm-http",
            "--compiler",
            "llm",
            "--executor",
            "http",
            SISU_LLM_MODEL="openai:fake-model",
            SISU_LLM_BASE_URL=model.base_url,
            SISU_LLM_API_KEY=KEY,
            SISU_WEBHOOK_URL=hook.url,
        ).start()
        try:
            wait_worker_ready(db_url, worker)
            with fast_backend(db_url) as b:
                run_ids = [start_intent(b, f"greet {i}") for i in range(2)]
            for rid in run_ids:
                wait_run_done(db_url, rid, worker=worker)
            page = scrape(admin_url(db_url, worker))
        finally:
            worker.stop()

    [tokens] = rows(
        db_url,
        "SELECT sum(input_tokens)::int AS input, sum(output_tokens)::int AS output, "
        "count(*)::int AS calls FROM app.opencode_calls WHERE model = 'openai:fake-model'",
    )
    assert tokens == {"input": 240, "output": 60, "calls": 2}
    for kind in ("input", "output"):
        assert (
            page.value("sisu_model_tokens_total", model="openai:fake-model", kind=kind)
            == (tokens[kind])
        )

    [sent] = rows(
        db_url,
        "SELECT sum(attempts)::int AS posts, count(delivered_at)::int AS delivered "
        "FROM app.deliveries",
    )
    assert sent == {"posts": 5, "delivered": 4}  # 2 runs x 2 tasks, and the one 503
    outcomes = page.by_label("sisu_deliveries_total", "outcome", executor="http")
    assert outcomes == {"delivered": sent["delivered"], "transient": 1}
    assert sum(outcomes.values()) == sent["posts"] == hook.total
    # The webhook's work is PerformST's: one transient attempt, then one per run.
    assert page.value("sisu_step_attempts_total", step="PerformST", outcome="transient") == 1
    assert page.value("sisu_step_attempts_total", step="PerformST", outcome="succeeded") == 2
    assert_steps_match_rows(page, db_url)
