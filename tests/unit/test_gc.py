"""`sisu gc`'s rules that need no database: what a retention duration is."""

from __future__ import annotations

import pytest

from sisu.errors import ValidationFailed
from sisu.service.gc import check_batch_size, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0s", 0),
        ("90m", 5400),
        ("12h", 43_200),
        ("30d", 2_592_000),
        ("2w", 1_209_600),
        ("1d12h", 129_600),
        (" 45s ", 45),
    ],
)
def test_a_duration_is_a_sum_of_numbers_with_units(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "30", "d", "-1d", "1.5h", "30 d", "30D", "1y", "30days", "1d-2h", "40000w"]
)
def test_anything_else_is_a_validation_error(text: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        parse_duration(text)
    assert info.value.code == "validation_error"
    assert info.value.exit_code == 2
    assert info.value.details == [{"field": "olderThan", "input": text}]


@pytest.mark.parametrize("size", [0, -1, 10_001])
def test_a_batch_size_out_of_range_is_a_validation_error(size: int) -> None:
    with pytest.raises(ValidationFailed):
        check_batch_size(size)
    assert check_batch_size(1) == 1
