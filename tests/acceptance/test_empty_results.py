"""A read command that finds nothing says so on stderr and names the database it read (without
its password), so that a forgotten SISU_HOME or SISU_DATABASE_URL is plain to see; stdout and
--json stay exactly what they were."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from sisu.db.url import redact
from tests.support.cli import run_sisu


def named(db_url: str, stderr: str) -> bool:
    password = urlsplit(db_url).password
    return f"database: {redact(db_url)}" in stderr and not (password and password in stderr)


@pytest.mark.parametrize(
    ("args", "stdout"),
    [
        pytest.param(["run", "inbox"], "", id="run-inbox"),
        pytest.param(["run", "retry", "--status", "failed", "--all", "--yes"], "", id="run-retry"),
        pytest.param(["queue", "list"], "queues are empty\n", id="queue-list"),
        pytest.param(
            ["workers", "list"], "no worker has ever started on this database\n", id="workers"
        ),
    ],
)
def test_an_empty_answer_names_the_database(
    sisu_env: dict[str, str], db_url: str, args: list[str], stdout: str
) -> None:
    result = run_sisu(args, sisu_env)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == stdout
    assert named(db_url, result.stderr), result.stderr


def test_an_empty_run_list_names_the_database(sisu_env: dict[str, str], db_url: str) -> None:
    for args in (["run", "list"], ["run", "list", "--status", "failed"]):
        result = run_sisu(args, sisu_env)
        assert result.exit_code == 0, result.stderr
        assert named(db_url, result.stderr), result.stderr


@pytest.mark.parametrize(
    ("args", "body"),
    [
        (["run", "inbox", "--json"], '{"items":[],"next":null}\n'),
        (["run", "list", "--json"], '{"items":[],"next":null}\n'),
        (["queue", "list", "--json"], '{"queues": []}\n'),
        (["workers", "list", "--json"], "[]\n"),
    ],
)
def test_json_output_is_unchanged_and_says_nothing_else(
    sisu_env: dict[str, str], args: list[str], body: str
) -> None:
    result = run_sisu(args, sisu_env)
    assert (result.exit_code, result.stdout, result.stderr) == (0, body, "")


@pytest.mark.parametrize(
    "args",
    [["run", "show", "nope"], ["intent", "run", "nope"], ["run", "cancel", "nope"]],
    ids=["run-show", "intent-run", "run-cancel"],
)
def test_an_unknown_id_names_the_database(
    sisu_env: dict[str, str], db_url: str, args: list[str]
) -> None:
    result = run_sisu([*args, "--json"], sisu_env)
    assert result.exit_code == 4, result.stderr
    assert result.json()["error"] == "not_found"
    assert named(db_url, result.stderr), result.stderr
