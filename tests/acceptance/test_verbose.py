"""`-v` is honoured before or after the command: `sisu run show ID -v` shows the traceback of
its error as `sisu -v run show ID` does, and changes nothing else (exit code, --json)."""

from __future__ import annotations

import pytest

from tests.support.cli import run_sisu

NOT_FOUND = 4


@pytest.mark.parametrize(
    "args",
    [
        ["-v", "run", "show", "no-such-run", "--json"],
        ["run", "show", "no-such-run", "--json", "-v"],
        ["run", "show", "--verbose", "no-such-run", "--json"],
    ],
    ids=["before", "after", "between"],
)
def test_verbose_anywhere_shows_the_one_traceback(
    sisu_env: dict[str, str], args: list[str]
) -> None:
    result = run_sisu(args, sisu_env)
    assert result.exit_code == NOT_FOUND, result.stderr
    assert result.json()["error"] == "not_found"
    # The command's own error, not chained to the parse that found -v after the command.
    assert result.stderr.count("Traceback (most recent call last)") == 1, result.stderr
    assert "NoSuchOption" not in result.stderr, result.stderr


def test_without_verbose_there_is_no_traceback(sisu_env: dict[str, str]) -> None:
    result = run_sisu(["run", "show", "no-such-run", "--json"], sisu_env)
    assert result.exit_code == NOT_FOUND, result.stderr
    assert result.json()["error"] == "not_found"
    assert "Traceback" not in result.stderr, result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["run", "show", "no-such-run", "-x"],  # another unknown option is still refused
        ["run", "show", "--", "no-such-run", "-v"],  # after --, -v is an argument
    ],
    ids=["unknown-option", "after-double-dash"],
)
def test_other_usage_errors_are_still_usage_errors(
    sisu_env: dict[str, str], args: list[str]
) -> None:
    result = run_sisu(args, sisu_env)
    assert result.exit_code == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
