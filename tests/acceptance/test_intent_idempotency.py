"""Idempotent intent creation as a client meets it: `POST /intents` with an `Idempotency-Key`
header against a real `sisu serve`, and `sisu intent create --idempotency-key` from the installed
binary. One key and one request make one intent (a replay answers 201 with the same body and
`Idempotent-Replayed: true`); another request with the key is 409 idempotency_conflict; a bad key
is 400 validation_error; none of the refusals writes a row."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support.cli import Result, run_sisu
from tests.support.db import rows, scalar, table_counts
from tests.support.envelopes import error_of
from tests.support.polling import poll
from tests.support.runview import COUNTED_TABLES, ERROR_KEYS
from tests.support.serve import serve_client


@pytest.fixture(scope="module")
def api(
    module_db_url: str, module_sisu_env: dict[str, str], tmp_path_factory: Any
) -> Iterator[httpx.Client]:
    log = tmp_path_factory.mktemp("idem") / "serve.log"
    with serve_client(module_sisu_env, log) as client:
        yield client


def keyed(url: str, key: str) -> list[dict[str, Any]]:
    return rows(url, "SELECT id, goal FROM app.intents WHERE idempotency_key = %s", (key,))


def test_the_same_key_and_body_answer_201_with_the_same_intent(
    api: httpx.Client, module_db_url: str
) -> None:
    key = str(uuid.uuid4())
    first = api.post(
        "/intents", json={"goal": "idem", "inputs": {"n": 1}}, headers={"Idempotency-Key": key}
    )
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    # The same body, keys in another order and a default spelled out.
    again = api.post(
        "/intents",
        json={"inputs": {"n": 1}, "constraints": {}, "goal": "idem"},
        headers={"Idempotency-Key": key},
    )
    assert again.status_code == 201, again.text
    assert again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"
    assert keyed(module_db_url, key) == [{"id": first.json()["intentId"], "goal": "idem"}]


def test_the_same_key_with_another_body_is_409_and_writes_nothing(
    api: httpx.Client, module_db_url: str
) -> None:
    key = str(uuid.uuid4())
    first = api.post("/intents", json={"goal": "idem"}, headers={"Idempotency-Key": key})
    assert first.status_code == 201, first.text
    before = table_counts(module_db_url, COUNTED_TABLES)
    conflict = api.post("/intents", json={"goal": "other"}, headers={"Idempotency-Key": key})
    body = error_of(conflict, 409, "idempotency_conflict")
    assert body["details"] == {"idempotencyKey": key, "intentId": first.json()["intentId"]}
    assert table_counts(module_db_url, COUNTED_TABLES) == before
    assert keyed(module_db_url, key) == [{"id": first.json()["intentId"], "goal": "idem"}]


@pytest.mark.parametrize("key", ["", "two words", "k" * 256], ids=["empty", "space", "too-long"])
def test_a_bad_key_is_400_and_writes_nothing(
    api: httpx.Client, module_db_url: str, key: str
) -> None:
    before = table_counts(module_db_url, COUNTED_TABLES)
    r = api.post("/intents", json={"goal": "idem"}, headers={"Idempotency-Key": key})
    body = error_of(r, 400, "validation_error")
    # Like path and query parameters, a header is named with its location.
    assert body["details"][0]["field"] == "header.Idempotency-Key"
    assert table_counts(module_db_url, COUNTED_TABLES) == before


def test_a_retry_after_a_lost_reply_creates_no_second_intent(
    api: httpx.Client, module_db_url: str
) -> None:
    """The client sends the request and hangs up before the reply (as when the shim or the
    network dies mid-answer); the shim creates the intent anyway. The retry with the same key
    gets that intent back."""
    key = str(uuid.uuid4())
    body = json.dumps({"goal": "lost reply"}).encode()
    where = urlsplit(str(api.base_url))
    request = (
        f"POST /intents HTTP/1.1\r\nHost: {where.netloc}\r\nContent-Type: application/json\r\n"
        f"Idempotency-Key: {key}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body
    with socket.create_connection((where.hostname, where.port), timeout=5) as sock:
        sock.sendall(request)
    # Nothing was read: the reply is lost. The row is the positive signal the shim did its work.
    lost = poll(
        "the intent of the lost reply", lambda: keyed(module_db_url, key) or None, timeout=30
    )
    retry = api.post("/intents", json={"goal": "lost reply"}, headers={"Idempotency-Key": key})
    assert retry.status_code == 201, retry.text
    assert retry.headers["idempotent-replayed"] == "true"
    assert retry.json() == {"intentId": lost[0]["id"]}
    assert keyed(module_db_url, key) == lost
    assert scalar(module_db_url, "SELECT count(*) FROM app.intents WHERE goal = 'lost reply'") == 1


def test_openapi_documents_the_header(api: httpx.Client) -> None:
    operation = api.get("/openapi.json").json()["paths"]["/intents"]["post"]
    assert "Idempotency-Key" in [p["name"] for p in operation["parameters"] if p["in"] == "header"]


# --- the CLI ------------------------------------------------------------------------------------


def cli_create(env: dict[str, str], *args: str) -> Result:
    return run_sisu(["intent", "create", *args, "--json"], env)


def test_cli_the_same_key_and_request_print_the_same_id(
    sisu_env: dict[str, str], db_url: str
) -> None:
    args = ["--goal", "g", "--inputs", '{"n": 1}', "--idempotency-key", "cli-1"]
    first, again = cli_create(sisu_env, *args), cli_create(sisu_env, *args)
    assert (first.exit_code, again.exit_code) == (0, 0), (first.stderr, again.stderr)
    assert again.json() == first.json()
    assert list(first.json()) == ["intentId"]
    assert keyed(db_url, "cli-1") == [{"id": first.json()["intentId"], "goal": "g"}]
    plain = run_sisu(["intent", "create", *args], sisu_env)
    assert plain.exit_code == 0, plain.stderr
    assert plain.stdout.strip() == first.json()["intentId"]
    assert scalar(db_url, "SELECT count(*) FROM app.intents") == 1


def test_cli_the_same_key_with_another_request_exits_5(
    sisu_env: dict[str, str], db_url: str
) -> None:
    first = cli_create(sisu_env, "--goal", "g", "--idempotency-key", "cli-2")
    assert first.exit_code == 0, first.stderr
    conflict = cli_create(sisu_env, "--goal", "other", "--idempotency-key", "cli-2")
    assert conflict.exit_code == 5, (conflict.stdout, conflict.stderr)
    body = conflict.json()
    assert set(body) == ERROR_KEYS
    assert body["error"] == "idempotency_conflict"
    assert body["details"]["intentId"] == first.json()["intentId"]
    assert scalar(db_url, "SELECT count(*) FROM app.intents") == 1


@pytest.mark.parametrize("key", ["", "a b", "k" * 256], ids=["empty", "space", "too-long"])
def test_cli_a_bad_key_exits_2_and_writes_nothing(
    sisu_env: dict[str, str], db_url: str, key: str
) -> None:
    result = cli_create(sisu_env, "--goal", "g", "--idempotency-key", key)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.json()["error"] == "validation_error"
    assert scalar(db_url, "SELECT count(*) FROM app.intents") == 0
