"""The rules `sisu worker` applies to its flags before anything starts: the failover timeout must
outlast a late heartbeat, the executor id defaults to one that is stable across restarts, and the
executor must be one the worker can run. No database, no worker."""

from __future__ import annotations

import logging
import re
import socket

import pytest

from sisu.errors import ValidationFailed
from sisu.worker import process


@pytest.mark.parametrize(("timeout", "heartbeat"), [(3.0, 2.0), (10.0, 2.0), (1.5, 1.0)])
def test_a_failover_timeout_of_at_least_one_and_a_half_heartbeats_is_accepted(
    timeout: float, heartbeat: float
) -> None:
    process.check_failover_timeout(timeout, heartbeat)


def test_a_failover_timeout_shorter_than_one_and_a_half_heartbeats_is_a_validation_error() -> None:
    with pytest.raises(ValidationFailed) as caught:
        process.check_failover_timeout(2.9, 2.0)
    exc = caught.value
    assert exc.exit_code == 2
    assert exc.envelope() == {
        "error": "validation_error",
        "message": "--failover-timeout 2.9 is shorter than 1.5 heartbeats "
        "(3s; SISU_HEARTBEAT_SECONDS): live workers would be taken for dead",
        "details": [{"field": "failover_timeout", "min": 3.0}],
    }


def test_the_default_executor_id_is_the_host_and_admin_port() -> None:
    assert process.executor_id_for(3002) == f"{socket.gethostname()}-3002"
    assert process.executor_id_for(3002) == process.executor_id_for(3002)


@pytest.mark.parametrize("port", [0, 3002])
def test_a_chosen_executor_id_is_kept(port: int) -> None:
    assert process.executor_id_for(port, "worker-a") == "worker-a"


def test_admin_port_0_without_an_id_gets_a_fresh_id_and_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="sisu.worker"):
        first, second = process.executor_id_for(0), process.executor_id_for(0)
    pattern = re.escape(socket.gethostname()) + r"-[0-9a-f]{8}"
    assert re.fullmatch(pattern, first) and re.fullmatch(pattern, second)
    assert first != second
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.args for r in warned] == [(first,), (second,)]


def test_the_mock_executor_needs_nothing() -> None:
    assert process.checked_executor("mock", "bwrap", None, None) == "mock"


@pytest.mark.parametrize(
    ("chosen", "isolation", "field"),
    [("nope", "bwrap", "executor"), ("http", "bwrap", "SISU_WEBHOOK_URL")],
)
def test_an_executor_that_cannot_run_is_a_validation_error(
    chosen: str, isolation: str, field: str
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        process.checked_executor(chosen, isolation, None, None)
    assert caught.value.details[0]["field"] == field


def _no_database() -> str:
    raise AssertionError("only a replay reads the database before the worker starts")


def test_the_builtin_compiler_needs_nothing() -> None:
    from sisu.config import Settings

    choice = process.checked_compiler("builtin", Settings(), _no_database)
    assert (choice.name, choice.llm, choice.replay) == ("builtin", None, None)


def test_an_unknown_compiler_is_a_validation_error_naming_the_choices() -> None:
    from sisu.config import Settings

    with pytest.raises(ValidationFailed) as caught:
        process.checked_compiler("gpt", Settings(), _no_database)
    assert caught.value.exit_code == 2
    assert caught.value.envelope()["details"] == [
        {"field": "compiler", "allowed": ["builtin", "llm", "replay"]}
    ]


def test_a_replay_without_a_source_is_refused_before_the_database_is_reached(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sisu.config import Settings

    monkeypatch.delenv("SISU_REPLAY_FROM", raising=False)
    with pytest.raises(ValidationFailed) as caught:
        process.checked_compiler("replay", Settings(), _no_database)
    assert caught.value.envelope()["details"] == [{"field": "SISU_REPLAY_FROM"}]
