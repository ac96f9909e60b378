"""The http executor's settings are checked when it is built, naming the variable to fix; what
it records of its URL carries no credentials."""

from __future__ import annotations

import pytest

from sisu.errors import ValidationFailed
from sisu.workflow.steps.webhook import HttpExecutor, idempotency_key, without_userinfo

DB = "postgresql://nobody@127.0.0.1:1/none"  # never connected to: nothing is performed


@pytest.mark.parametrize(
    "url", ["", "127.0.0.1:8080/hook", "ftp://example.test/hook", "http:///no-host"]
)
def test_a_url_that_is_not_http_with_a_host_is_refused(url: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        HttpExecutor(url, None, DB)
    assert refused.value.details == [{"field": "SISU_WEBHOOK_URL"}]


def test_the_refusal_does_not_echo_a_password() -> None:
    with pytest.raises(ValidationFailed) as refused:
        HttpExecutor("ftp://u:hunter2@example.test/", None, DB)
    assert "hunter2" not in refused.value.message


@pytest.mark.parametrize("token", ["two words", "line\nbreak", "tab\there", "naïve"])
def test_a_token_that_cannot_be_a_header_value_is_refused(token: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        HttpExecutor("http://127.0.0.1:9/hook", token, DB)
    assert refused.value.details == [{"field": "SISU_WEBHOOK_TOKEN"}]
    assert token not in refused.value.message


def test_an_empty_token_means_none() -> None:
    ex = HttpExecutor("https://hooks.example.test/in", "", DB)
    try:
        assert (ex.name, ex.uses_workspace) == ("http", False)
    finally:
        ex.close()


@pytest.mark.parametrize(
    ("url", "recorded"),
    [
        ("https://hooks.example.test/in?x=1", "https://hooks.example.test/in?x=1"),
        ("https://u:p@hooks.example.test:8443/in", "https://hooks.example.test:8443/in"),
        ("http://only-user@127.0.0.1/h", "http://127.0.0.1/h"),
        ("http://u:p%40ss@127.0.0.1/h", "http://127.0.0.1/h"),
    ],
)
def test_the_recorded_url_has_no_userinfo(url: str, recorded: str) -> None:
    assert without_userinfo(url) == recorded


def test_the_key_is_run_step_task() -> None:
    assert idempotency_key("r-1", "t-9") == "r-1:ExecuteST:t-9"
