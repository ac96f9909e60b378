"""The one parser of JSON input on the command line (`--inputs`, `--constraints`, `--workload`,
`--payload`): inline or @file, an object or a validation_error naming the flag."""

from __future__ import annotations

from pathlib import Path

import pytest

from sisu.cli._input import integer_or_text, parse_json_arg, validate
from sisu.contracts.runs import RunRequest
from sisu.errors import ValidationFailed


def test_no_value_is_an_empty_object() -> None:
    assert parse_json_arg(None, "inputs") == {}


def test_inline_and_at_file_give_the_same_object(tmp_path: Path) -> None:
    path = tmp_path / "inputs.json"
    path.write_text('{"a": [1, 2]}')
    assert parse_json_arg('{"a": [1, 2]}', "inputs") == parse_json_arg(f"@{path}", "inputs")


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("{nope", "--payload is not valid JSON"),
        ("[1, 2]", "--payload must be a JSON object"),
        ("[" * 100_000, "--payload is not valid JSON"),
        ("@/no/such/file.json", "--payload: cannot read /no/such/file.json"),
    ],
    ids=["malformed", "not-an-object", "too-deep", "missing-file"],
)
def test_bad_input_is_a_validation_error_naming_the_flag(value: str, says: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_json_arg(value, "payload")
    assert caught.value.message.startswith(says)
    assert caught.value.details == [{"field": "payload"}]


def test_a_contract_breach_is_a_validation_error_with_field_details() -> None:
    assert validate(RunRequest, {"priority": integer_or_text("5")}).priority == 5
    with pytest.raises(ValidationFailed) as caught:
        validate(RunRequest, {"priority": integer_or_text("soon")})
    assert caught.value.details


def test_an_integer_flag_that_is_not_one_stays_text() -> None:
    assert integer_or_text("12") == 12
    assert integer_or_text("12x") == "12x"
