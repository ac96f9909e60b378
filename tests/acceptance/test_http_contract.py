"""The api-shim's HTTP contract against a real `sisu serve` over real HTTP: bytes PostgreSQL
cannot store are a 400 naming the field (from the CLI too), every unexpected error is the JSON
envelope, big bodies are refused unread, non-JSON bodies are told so, 405 carries `Allow`, the
token spares /healthz, and /openapi.json says what the server answers (schemathesis checks)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from sisu.contracts.runs import cursor_format
from sisu.service import paging
from tests.acceptance.test_api import base_env
from tests.support.cli import run_sisu
from tests.support.db import clone_template, drop_database, table_counts
from tests.support.envelopes import error_of
from tests.support.serve import running_serve

WRITTEN = ["app.intents", "app.runs", "app.human_events", "dbos.workflow_status"]
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def shim(module_db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `sisu serve` (no worker: nothing here needs a run to execute); its base URL."""
    tmp = tmp_path_factory.mktemp("contract")
    with running_serve(base_env(module_db_url, tmp / "home"), tmp / "serve.log") as server:
        assert server.wait_responding("/healthz").status_code == 200
        yield server.base_url


@pytest.fixture
def api(shim: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=shim, timeout=30) as client:
        yield client


def raw_json(text: str) -> dict[str, Any]:
    """A body sent byte for byte (JSON escapes like \\u0000 stay escapes on the wire)."""
    return {"content": text.encode(), "headers": {"content-type": "application/json"}}


# --- bad bytes: (method, path, request kwargs, the field the error must name) ----------------

BAD_BYTES = [
    pytest.param("POST", "/intents", raw_json('{"goal":"a\\u0000b"}'), "goal", id="goal-nul"),
    pytest.param(
        "POST", "/intents", raw_json('{"goal":"g","inputs":{"k":{"deep":["x","\\u0000"]}}}'),
        "inputs.k.deep[1]", id="inputs-nested-value-nul",
    ),
    pytest.param(
        "POST", "/intents", raw_json('{"goal":"g","constraints":{"a\\u0000":1}}'),
        "constraints.a\\u0000", id="constraints-key-nul",
    ),
    pytest.param(
        "POST", "/intents", raw_json('{"goal":"g","connectors":[{"name":"\\u0000"}]}'),
        "connectors[0].name", id="connectors-nul",
    ),
    pytest.param(
        "POST", "/intents", raw_json('{"goal":"g","inputs":{"n":NaN}}'), "inputs.n",
        id="inputs-nan",
    ),
    pytest.param(
        "POST", "/intents", raw_json('{"goal":"g","inputs":{"s":"lone \\ud800"}}'), "inputs.s",
        id="inputs-lone-surrogate",
    ),
    pytest.param(
        "POST", "/intents/{intent}/run", raw_json('{"traceId":"t\\u0000"}'), "traceId",
        id="trace-id-nul",
    ),
    pytest.param(
        "POST", "/intents/{intent}/run", raw_json('{"deduplicationId":"\\u0000"}'),
        "deduplicationId", id="dedupe-id-nul",
    ),
    pytest.param(
        "POST", "/runs/{intent}/events", raw_json('{"type":"input","payload":{"a":"\\u0000"}}'),
        "payload.a", id="event-payload-nul",
    ),
    pytest.param("GET", "/runs/%00", {}, "path.run_id", id="run-id-nul"),
    pytest.param("POST", "/runs/a%00b/retry", {}, "path.run_id", id="retry-id-nul"),
    pytest.param("POST", "/runs/%00/cancel", {}, "path.run_id", id="cancel-id-nul"),
    pytest.param("POST", "/intents/%00/run", {}, "path.intent_id", id="intent-id-nul"),
    pytest.param("GET", "/runs?status=%00", {}, "query.status", id="status-query-nul"),
]  # fmt: skip


@pytest.mark.parametrize(("method", "path", "kwargs", "field"), BAD_BYTES)
def test_bad_bytes_are_a_400_naming_the_field(
    api: httpx.Client,
    module_db_url: str,
    method: str,
    path: str,
    kwargs: dict[str, Any],
    field: str,
) -> None:
    if "{intent}" in path:
        created = api.post("/intents", json={"goal": "demo"})
        assert created.status_code == 201, created.text
        path = path.format(intent=created.json()["intentId"])
    before = table_counts(module_db_url, WRITTEN)
    body = error_of(api.request(method, path, **kwargs), 400, "validation_error")
    assert field in [d["field"] for d in body["details"]], body
    assert body["message"].startswith(field), body
    assert table_counts(module_db_url, WRITTEN) == before


def test_the_cli_refuses_bad_bytes_with_the_envelope(
    sisu_env: dict[str, str], db_url: str, tmp_path: Path
) -> None:
    """A NUL cannot ride in argv, but it can in a JSON escape or an @file: exit 2, the envelope
    on stdout under --json, nothing written."""
    before = table_counts(db_url, WRITTEN)
    result = run_sisu(
        ["intent", "create", "--goal", "g", "--inputs", '{"k":"\\u0000"}', "--json"], sisu_env
    )
    assert result.exit_code == 2, (result.stdout, result.stderr)
    envelope = result.json()
    assert envelope["error"] == "validation_error", envelope
    assert [d["field"] for d in envelope["details"]] == ["inputs.k"], envelope

    constraints = tmp_path / "constraints.json"
    constraints.write_text(json.dumps({"limits": {"name\u0000": 1}}))
    result = run_sisu(
        ["intent", "create", "--goal", "g", "--constraints", f"@{constraints}", "--json"],
        sisu_env,
    )
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.json()["error"] == "validation_error"
    assert result.json()["details"][0]["field"] == "constraints.limits.name\\u0000"
    assert table_counts(db_url, WRITTEN) == before


# --- unexpected errors -----------------------------------------------------------------------


def test_an_unexpected_error_is_the_json_envelope(
    pg_admin_url: str, template_db: str, tmp_path: Path
) -> None:
    """A schema broken under a running shim makes every route that reads runs fail with an
    error sisu does not know (UndefinedTable): a 500 with the envelope, and the shim lives on."""
    name, url = clone_template(pg_admin_url, template_db)
    try:
        with running_serve(base_env(url, tmp_path / "home"), tmp_path / "serve.log") as server:
            assert server.wait_responding("/healthz").status_code == 200
            with httpx.Client(base_url=server.base_url, timeout=30) as client:
                intent = client.post("/intents", json={"goal": "demo"}).json()["intentId"]
                with psycopg.connect(url, autocommit=True) as conn:
                    conn.execute("ALTER TABLE app.runs RENAME TO runs_moved_away")
                for method, path in [
                    ("GET", "/runs/some-run"),
                    ("GET", "/runs"),
                    ("POST", f"/intents/{intent}/run"),
                    ("POST", "/runs/some-run/retry"),
                ]:
                    response = client.request(method, path)
                    assert response.headers["content-type"] == "application/json", response.text
                    body = error_of(response, 500, "internal_error")
                    assert body["details"] is None
                assert client.get("/healthz").status_code == 200
            assert server.proc is not None and server.proc.poll() is None
    finally:
        drop_database(pg_admin_url, name)


def test_a_value_the_database_refuses_is_a_400(
    pg_admin_url: str, template_db: str, tmp_path: Path
) -> None:
    """A rule only PostgreSQL knows (here a goal column narrowed under the shim) refuses the
    caller's value with a DataError: a 400 validation_error, nothing written."""
    name, url = clone_template(pg_admin_url, template_db)
    try:
        with running_serve(base_env(url, tmp_path / "home"), tmp_path / "serve.log") as server:
            assert server.wait_responding("/healthz").status_code == 200
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("ALTER TABLE app.intents ALTER COLUMN goal TYPE varchar(3)")
            before = table_counts(url, WRITTEN)
            refused = httpx.post(server.base_url + "/intents", json={"goal": "demo"}, timeout=30)
            body = error_of(refused, 400, "validation_error")
            assert "too long" in body["message"], body
            assert table_counts(url, WRITTEN) == before
    finally:
        drop_database(pg_admin_url, name)


# --- big bodies and non-JSON bodies ----------------------------------------------------------


def big_intent(size: int) -> bytes:
    body = json.dumps({"goal": "big", "inputs": {"pad": "x" * size}}).encode()
    assert len(body) > size
    return body


def test_a_body_over_the_limit_is_413(api: httpx.Client, module_db_url: str) -> None:
    before = table_counts(module_db_url, WRITTEN)
    sized = api.post(
        "/intents", content=big_intent(2 * MIB), headers={"content-type": "application/json"}
    )
    body = error_of(sized, 413, "payload_too_large")
    assert body["details"] == {"maxBytes": MIB}

    # No Content-Length: a chunked upload is cut off once it passes the limit.
    def chunks() -> Iterator[bytes]:
        data = big_intent(2 * MIB)
        for start in range(0, len(data), 64 * 1024):
            yield data[start : start + 64 * 1024]

    chunked = api.post("/intents", content=chunks(), headers={"content-type": "application/json"})
    error_of(chunked, 413, "payload_too_large")
    assert table_counts(module_db_url, WRITTEN) == before
    # Just under the limit still goes through.
    ok = api.post(
        "/intents", content=big_intent(MIB - 1024), headers={"content-type": "application/json"}
    )
    assert ok.status_code == 201, ok.text


def test_the_body_limit_follows_sisu_max_body_bytes(db_url: str, tmp_path: Path) -> None:
    env = {**base_env(db_url, tmp_path / "home"), "SISU_MAX_BODY_BYTES": "4096"}
    with running_serve(env, tmp_path / "serve.log") as server:
        assert server.wait_responding("/healthz").status_code == 200
        headers = {"content-type": "application/json"}
        over = httpx.post(
            server.base_url + "/intents", content=big_intent(5000), headers=headers, timeout=30
        )
        assert error_of(over, 413, "payload_too_large")["details"] == {"maxBytes": 4096}
        under = httpx.post(
            server.base_url + "/intents", content=big_intent(3000), headers=headers, timeout=30
        )
        assert under.status_code == 201, under.text


@pytest.mark.parametrize(
    "content_type",
    ["application/x-www-form-urlencoded", "text/plain", "multipart/form-data", None],
)
def test_a_body_not_sent_as_json_is_told_so(
    api: httpx.Client, module_db_url: str, content_type: str | None
) -> None:
    before = table_counts(module_db_url, WRITTEN)
    headers = {"content-type": content_type} if content_type else {}
    response = api.post("/intents", content=b'{"goal":"demo"}', headers=headers)
    body = error_of(response, 415, "unsupported_media_type")
    assert "Content-Type: application/json" in body["message"], body
    assert table_counts(module_db_url, WRITTEN) == before


def test_json_content_types_are_accepted(api: httpx.Client) -> None:
    for content_type in ["application/json", "application/json; charset=utf-8"]:
        r = api.post("/intents", content=b'{"goal":"demo"}', headers={"content-type": content_type})
        assert r.status_code == 201, (content_type, r.text)


# --- methods, token, OpenAPI -----------------------------------------------------------------


def test_405_carries_allow(api: httpx.Client) -> None:
    response = api.delete("/intents")
    error_of(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "POST"
    response = api.put("/runs/some-run")
    error_of(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "GET"


def test_with_a_token_only_healthz_is_open(db_url: str, tmp_path: Path) -> None:
    env = {**base_env(db_url, tmp_path / "home"), "SISU_API_TOKEN": "s3cret"}
    with running_serve(env, tmp_path / "serve.log") as server:
        probe = server.wait_responding("/healthz")
        assert probe.status_code == 200, probe.text
        assert probe.json()["db"] == "up"
        before = table_counts(db_url, WRITTEN)
        with httpx.Client(base_url=server.base_url, timeout=30) as client:
            for method, path, headers in [
                ("GET", "/runs", {}),
                ("GET", "/openapi.json", {}),
                ("POST", "/intents", {}),
                ("POST", "/intents", {"authorization": "Bearer wrong"}),
                ("POST", "/intents", {"authorization": "Basic czNjcmV0"}),
                ("POST", "/intents", {"authorization": "s3cret"}),
            ]:
                response = client.request(method, path, json={"goal": "g"}, headers=headers)
                error_of(response, 401, "unauthorized")
                assert response.headers["www-authenticate"] == "Bearer", response.headers
            assert table_counts(db_url, WRITTEN) == before
            for scheme in ["Bearer", "bearer", "BEARER"]:
                response = client.post(
                    "/intents", json={"goal": "g"}, headers={"authorization": f"{scheme} s3cret"}
                )
                assert response.status_code == 201, (scheme, response.text)


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            yield path, method, operation


def test_openapi_documents_what_the_server_answers(api: httpx.Client) -> None:
    document = api.get("/openapi.json").json()
    envelope = {"$ref": "#/components/schemas/ErrorBody"}
    assert document["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": document["components"]["securitySchemes"]["bearerAuth"]["description"],
    }
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for path, method, operation in operations(document):
        responses = operation["responses"]
        assert "422" not in responses, (path, method)
        if path == "/healthz":
            assert operation["security"] == []
            continue
        for status in ["400", "401", "413", "500"]:
            schema = responses[status]["content"]["application/json"]["schema"]
            assert schema == envelope, (path, method, status)
    paths = document["paths"]
    assert {"404", "409", "415"} <= set(paths["/intents/{intent_id}/run"]["post"]["responses"])
    assert "409" in paths["/runs/{run_id}/cancel"]["post"]["responses"]
    limit = next(p for p in paths["/runs"]["get"]["parameters"] if p["name"] == "limit")
    assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, 1000)
    error_of(api.get("/runs", params={"limit": 1001}), 400, "validation_error")
    schemas = document["components"]["schemas"]
    # The caps in force are the workload maxima; dedupe and partition do not mix.
    concurrency = schemas["Workload"]["properties"]["concurrency"]["anyOf"][0]
    assert (concurrency["minimum"], concurrency["maximum"]) == (1, 16)
    assert set(schemas["RunRequest"]["not"]["required"]) == {"deduplicationId", "queuePartitionKey"}
    assert schemas["IntentCreate"]["properties"]["goal"]["pattern"] == "^[^\\u0000]*$"


# --- schemathesis: generated requests against the real server --------------------------------


# A page cursor is opaque (`format: sisu-cursor-runs` / `-inbox`): valid ones are what sisu gives
# out, so the generator is taught to make those — any time, any run id — and not arbitrary
# strings, which a server must refuse (tests/acceptance/test_paging.py).
for _list in ("runs", "inbox"):
    schemathesis.openapi.format(
        cursor_format(_list),
        st.builds(paging.Position, st.datetimes(timezones=st.just(UTC)), st.uuids().map(str)).map(
            partial(paging.encode, _list)
        ),
    )


# The pytest plugin's lazy loader (`schemathesis.pytest.from_fixture`) breaks on pytest 9 (it
# reads `request.node._nodeid`), so each operation's strategy is driven by Hypothesis directly.
EXAMPLES_PER_OPERATION = 15


def contract_failures(base_url: str, headers: dict[str, str], examples: int) -> list[str]:
    """Valid and invalid requests generated from the server's /openapi.json, for every
    operation, through schemathesis' default checks: no 5xx, every status documented, every
    body and header as the document says, valid data accepted, invalid data refused."""
    schema = schemathesis.openapi.from_url(base_url + "/openapi.json", headers=headers)
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) == 12, [op.label for op in operations]  # GET /metrics is the 12th
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=examples,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def check(case: schemathesis.Case[Any]) -> None:
                # Called within this iteration, so the loop variable is the one meant.
                positive = mode is GenerationMode.POSITIVE  # noqa: B023
                if (
                    positive
                    and case.operation.label == "POST /intents"
                    and isinstance(case.body, dict)
                ):
                    # `repo` names a git repository on the server's machine, which no generator
                    # can guess: a well-formed path that is not one is a 400 by design (tested
                    # in test_api.py). Everything else in the body is generated as usual.
                    case.body.pop("repo", None)
                    case.body.pop("ref", None)
                case.call_and_validate(headers=headers)

            try:
                check()
            except Unsatisfiable:
                # Nothing to make invalid (no parameters, or only a path id whose invalid forms
                # cannot be sent in a URL): no negative case exists for this operation.
                assert mode is GenerationMode.NEGATIVE, operation.label
            except Exception as exc:
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    return failures


def test_the_server_keeps_its_openapi_contract(shim: str) -> None:
    failures = contract_failures(shim, {}, EXAMPLES_PER_OPERATION)
    assert not failures, "\n\n".join(failures)


def test_a_server_with_a_token_keeps_its_openapi_contract(db_url: str, tmp_path: Path) -> None:
    """The same with SISU_API_TOKEN set: the bearer scheme is required, and enforced."""
    env = {**base_env(db_url, tmp_path / "home"), "SISU_API_TOKEN": "s3cret"}
    with running_serve(env, tmp_path / "serve.log") as server:
        assert server.wait_responding("/healthz").status_code == 200
        failures = contract_failures(server.base_url, {"Authorization": "Bearer s3cret"}, 5)
    assert not failures, "\n\n".join(failures)
