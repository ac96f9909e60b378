"""The api-shim as an operator meets it: a real `sisu serve` on a free port and a real `sisu
worker`, over real HTTP. The ops-manual flow, fail-closed rejections (zero rows written), the
bind guard and bearer token, and /healthz with the database up and gone."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sisu.drills.processes import WorkerProcess
from tests.support.cli import run_sisu
from tests.support.db import clone_template, drop_database, rows, table_counts
from tests.support.envelopes import error_of
from tests.support.polling import poll
from tests.support.runs import STEP_IDS, wait_workflow_status
from tests.support.runview import COUNTED_TABLES, assert_runview_shape
from tests.support.serve import free_port, running_serve, serve_client
from tests.support.workers import running_worker


def base_env(url: str, home: Path) -> dict[str, str]:
    """Like the `sisu_env` fixture, for a database this module owns."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SISU_", "DBOS__"))}
    env.update(
        SISU_DATABASE_URL=url,
        SISU_HOME=str(home),
        NO_COLOR="1",
        COLUMNS="200",
        PYTHONUNBUFFERED="1",
    )
    return env


# One database, api-shim and worker for the flow and rejection tests: every assertion below is
# about rows of its own intent or about row counts taken before and after, so sharing is safe.


@pytest.fixture(scope="module")
def api_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("api")


@pytest.fixture(scope="module")
def api_worker(module_db_url: str, api_tmp: Path) -> Iterator[WorkerProcess]:
    with running_worker(module_db_url, api_tmp, name="api") as worker:
        yield worker


@pytest.fixture(scope="module")
def api(module_db_url: str, api_tmp: Path, api_worker: WorkerProcess) -> Iterator[httpx.Client]:
    env = base_env(module_db_url, api_tmp / "home")
    with serve_client(env, api_tmp / "logs" / "serve.log") as client:
        yield client


def create_intent(api: httpx.Client, **inputs: Any) -> str:
    r = api.post("/intents", json={"goal": "demo", "inputs": inputs, "constraints": {}})
    assert r.status_code == 201, r.text
    return str(r.json()["intentId"])


def test_ops_manual_flow(api: httpx.Client, module_db_url: str) -> None:
    r = api.post("/intents", json={"goal": "demo", "inputs": {}, "constraints": {}})
    assert r.status_code == 201, r.text
    assert list(r.json()) == ["intentId"]
    intent_id = r.json()["intentId"]

    r = api.post(f"/intents/{intent_id}/run", json={"traceId": "ops-01"})
    assert r.status_code == 202, r.text
    started = r.json()
    assert set(started) == {"runId", "workflowId", "intentId", "status"}
    assert started["runId"] == started["workflowId"] == started["intentId"] == intent_id
    assert started["status"] == "queued"

    def settled() -> dict[str, Any] | None:
        got = api.get(f"/runs/{intent_id}")
        assert got.status_code == 200, got.text
        view: dict[str, Any] = got.json()
        assert view["status"] not in {"failed", "canceled", "retries_exceeded"}, view
        return view if view["status"] == "succeeded" else None

    view = poll("the run to succeed", settled, timeout=60, interval=0.1)
    assert_runview_shape(view)
    wait_workflow_status(module_db_url, intent_id, "SUCCESS")
    assert view["runId"] == view["workflowId"] == view["intentId"] == intent_id
    assert view["traceId"] == "ops-01"
    assert view["nextAction"] is None
    assert view["lastStep"] == "ExecuteST"
    assert [(s["stepId"], s["attempt"], s["phase"]) for s in view["steps"]] == [
        (step, 1, "succeeded") for step in STEP_IDS
    ]
    assert rows(
        module_db_url, "SELECT status, name FROM dbos.workflow_status WHERE workflow_uuid = %s",
        (intent_id,),
    ) == [{"status": "SUCCESS", "name": "RunIntentWF"}]  # fmt: skip

    calls = api.get(f"/runs/{intent_id}/calls")
    assert calls.status_code == 200, calls.text
    assert [(c["stepId"], c["compiler"], c["attempt"]) for c in calls.json()] == [
        ("CompileST", "builtin", 1)
    ]
    assert api.get("/runs/no-such-run/calls").status_code == 404

    again = api.post(f"/intents/{intent_id}/run", json={"traceId": "ops-02"})
    assert again.status_code == 202, again.text
    assert again.json()["runId"] == intent_id
    assert again.json()["status"] == "succeeded"
    assert len(rows(module_db_url, "SELECT 1 FROM dbos.workflow_status WHERE workflow_uuid = %s",
                    (intent_id,))) == 1  # fmt: skip


def test_a_run_request_without_a_body_is_accepted(api: httpx.Client) -> None:
    intent_id = create_intent(api)
    r = api.post(f"/intents/{intent_id}/run")
    assert r.status_code == 202, r.text
    assert r.json()["runId"] == intent_id


# Each rejection: (method, path template, body kwargs, status, error code). "{intent}" is an
# intent that exists and has no run yet.
REJECTIONS = [
    pytest.param(
        "POST", "/intents",
        {"content": b'{"goal": "demo",', "headers": {"content-type": "application/json"}},
        400, "invalid_json", id="bad-json",
    ),
    pytest.param(
        "POST", "/intents", {"json": {"inputs": {}, "constraints": {}}},
        400, "validation_error", id="missing-goal",
    ),
    pytest.param(
        "POST", "/intents", {"json": {"goal": "demo", "inputs": {}, "constraints": {}, "x": 1}},
        400, "validation_error", id="unknown-intent-field",
    ),
    pytest.param(
        "POST", "/intents", {"json": {"goal": "demo", "inputs": [1]}},
        400, "validation_error", id="inputs-not-an-object",
    ),
    pytest.param(
        "POST", "/intents", {"json": {"goal": "", "inputs": {}}},
        400, "validation_error", id="empty-goal",
    ),
    pytest.param(
        "POST", "/intents/{intent}/run", {"json": {"traceId": "t", "bogus": True}},
        400, "validation_error", id="unknown-run-field",
    ),
    pytest.param(
        "POST", "/intents/{intent}/run",
        {"content": b"{nope", "headers": {"content-type": "application/json"}},
        400, "invalid_json", id="bad-json-run",
    ),
    pytest.param(
        "POST", "/intents/no-such-intent/run", {"json": {"traceId": "t"}},
        404, "not_found", id="run-unknown-intent",
    ),
    pytest.param("GET", "/runs/no-such-run", {}, 404, "not_found", id="get-unknown-run"),
    pytest.param(
        "GET", "/runs?status=bogus", {}, 400, "validation_error", id="list-bogus-status"
    ),
    pytest.param("GET", "/runs?limit=0", {}, 400, "validation_error", id="list-limit-0"),
    pytest.param("GET", "/runs?limit=abc", {}, 400, "validation_error", id="list-limit-text"),
    pytest.param("GET", "/runs?limt=5", {}, 400, "validation_error", id="list-unknown-query"),
    pytest.param(
        "POST", "/intents/{intent}/run", {"json": {"traceId": 5}},
        400, "validation_error", id="run-trace-id-number",
    ),
    pytest.param(
        "POST", "/intents", {"json": ["goal", "demo"]}, 400, "validation_error", id="body-array"
    ),
    pytest.param("GET", "/no-such-route", {}, 404, "not_found", id="unknown-route"),
    pytest.param(
        "POST", "/intents", {"json": {"goal": "demo", "repo": "/no/such/repo"}},
        400, "validation_error", id="repo-missing",
    ),
    pytest.param(
        "POST", "/intents", {"json": {"goal": "demo", "repo": "/"}},
        400, "validation_error", id="repo-not-git",
    ),
    pytest.param(
        "POST", "/intents", {"json": {"goal": "demo", "ref": "main"}},
        400, "validation_error", id="ref-without-repo",
    ),
    pytest.param(
        "POST", "/intents", {"json": {"goal": "demo", "inputs": {"files": [{"path": 1}]}}},
        400, "validation_error", id="scripted-files-malformed",
    ),
    pytest.param(
        "POST", "/intents", {"json": {"goal": "demo", "constraints": {"env": {"A B": "x"}}}},
        400, "validation_error", id="command-env-bad-name",
    ),
    pytest.param(
        "POST", "/intents/{timeout_intent}/run", {"json": {}},
        400, "queue_policy_violation", id="command-timeout-over-cap",
    ),
    pytest.param("GET", "/runs/no-such-run/patch", {}, 404, "not_found", id="patch-unknown-run"),
    pytest.param("DELETE", "/intents", {}, 405, "method_not_allowed", id="wrong-method"),
]  # fmt: skip


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "code"), REJECTIONS)
def test_rejections_fail_closed(
    api: httpx.Client,
    module_db_url: str,
    method: str,
    path: str,
    kwargs: dict[str, Any],
    status: int,
    code: str,
) -> None:
    if "{intent}" in path:
        path = path.format(intent=create_intent(api))
    if "{timeout_intent}" in path:  # over SISU_CAP_SANDBOX_MINUTES (60) x 60 s
        created = api.post(
            "/intents", json={"goal": "slow", "constraints": {"timeoutSeconds": 3601}}
        )
        path = path.format(timeout_intent=created.json()["intentId"])
    before = table_counts(module_db_url, COUNTED_TABLES)
    response = api.request(method, path, **kwargs)
    error_of(response, status, code)
    assert table_counts(module_db_url, COUNTED_TABLES) == before


def test_openapi_lists_the_routes(api: httpx.Client) -> None:
    r = api.get("/openapi.json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    assert "/intents" in paths
    assert "/intents/{intent_id}/run" in paths
    assert "/runs/{run_id}" in paths


def test_healthz_names_the_live_worker(api: httpx.Client, api_worker: WorkerProcess) -> None:
    def with_worker() -> dict[str, Any] | None:
        r = api.get("/healthz")
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        ids = [w["executorId"] for w in body["workers"]]
        return body if api_worker.executor_id in ids else None

    body = poll("the worker in /healthz", with_worker, timeout=30, interval=0.2)
    assert set(body) == {"ok", "db", "appVersion", "workers"}
    assert body["ok"] is True
    assert body["db"] == "up"
    assert body["appVersion"] == "v1"


def test_a_runs_patch_is_a_diff_over_http(api: httpx.Client, module_db_url: str) -> None:
    files = [{"path": "hello.txt", "content": "hello\n"}]
    intent_id = create_intent(api, files=files)
    assert api.post(f"/intents/{intent_id}/run", json={}).status_code == 202
    wait_workflow_status(module_db_url, intent_id, "SUCCESS")
    r = api.get(f"/runs/{intent_id}/patch")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/x-diff")
    assert r.text == (
        "diff --git a/hello.txt b/hello.txt\nnew file mode 100644\n--- /dev/null\n"
        "+++ b/hello.txt\n@@ -0,0 +1 @@\n+hello\n"
    )


def test_list_runs(api: httpx.Client) -> None:
    intent_id = create_intent(api)
    assert api.post(f"/intents/{intent_id}/run", json={}).status_code == 202
    r = api.get("/runs", params={"limit": 5})
    assert r.status_code == 200, r.text
    listed = r.json()
    assert list(listed) == ["items", "next"]
    assert 1 <= len(listed["items"]) <= 5
    # Newest first: the run just triggered heads the list.
    assert listed["items"][0]["runId"] == intent_id
    r = api.get("/runs", params={"status": "succeeded", "limit": 1000})
    assert r.status_code == 200
    assert all(run["status"] == "succeeded" for run in r.json()["items"])


# --- binding and auth: a server of their own -------------------------------------------------


def test_a_public_bind_without_a_token_is_refused(sisu_env: dict[str, str]) -> None:
    port = free_port("0.0.0.0")
    started = time.monotonic()
    result = run_sisu(["serve", "--host", "0.0.0.0", "--port", str(port)], sisu_env, timeout=30)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert time.monotonic() - started < 30
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)


def test_a_public_bind_with_a_token_requires_it(sisu_env: dict[str, str], tmp_path: Path) -> None:
    env = {**sisu_env, "SISU_API_TOKEN": "secret"}
    with running_serve(env, tmp_path / "serve.log", host="0.0.0.0") as server:
        # /healthz stays open for liveness probes (tests/acceptance/test_http_contract.py).
        assert server.wait_responding("/healthz").status_code == 200
        anonymous = httpx.get(server.base_url + "/runs", timeout=5)
        error_of(anonymous, 401, "unauthorized")
        wrong = httpx.get(
            server.base_url + "/runs", headers={"Authorization": "Bearer nope"}, timeout=5
        )
        error_of(wrong, 401, "unauthorized")
        before = table_counts(sisu_env["SISU_DATABASE_URL"], COUNTED_TABLES)
        refused = httpx.post(
            server.base_url + "/intents", json={"goal": "demo", "inputs": {}}, timeout=5
        )
        error_of(refused, 401, "unauthorized")
        assert table_counts(sisu_env["SISU_DATABASE_URL"], COUNTED_TABLES) == before
        ok = httpx.get(
            server.base_url + "/runs", headers={"Authorization": "Bearer secret"}, timeout=5
        )
        assert ok.status_code == 200, ok.text
        assert ok.json() == {"items": [], "next": None}


def test_healthz_is_503_when_the_database_is_gone(
    pg_admin_url: str, template_db: str, tmp_path: Path
) -> None:
    name, url = clone_template(pg_admin_url, template_db)
    try:
        with running_serve(base_env(url, tmp_path / "home"), tmp_path / "serve.log") as server:
            up = server.wait_responding("/healthz")
            assert up.status_code == 200, up.text
            assert up.json()["db"] == "up"
            drop_database(pg_admin_url, name)

            def down() -> httpx.Response | None:
                r = httpx.get(server.base_url + "/healthz", timeout=15)
                return r if r.status_code != 200 else None

            r = poll("/healthz to report the database down", down, timeout=30, interval=0.2)
            assert r.status_code == 503, r.text
            body = r.json()
            assert body["ok"] is False
            assert body["db"] == "down"
            # Writes fail the same way, with the one error envelope, and the server lives on.
            refused = httpx.post(
                server.base_url + "/intents", json={"goal": "demo", "inputs": {}}, timeout=15
            )
            error_of(refused, 503, "db_unavailable")
            assert server.proc is not None and server.proc.poll() is None
    finally:
        drop_database(pg_admin_url, name)
