"""The page cursor (sisu.service.paging): what sisu gives out reads back as the same position,
fits the documented length and alphabet, and anything else is a validation error naming
`after` — never an exception of another kind."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sisu.contracts.runs import MAX_CURSOR_CHARS
from sisu.errors import ValidationFailed
from sisu.service import paging

positions = st.builds(
    paging.Position,
    st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=-7, minutes=-30))])),
    st.uuids().map(str),
)


LIST_NAMES: list[paging.ListName] = ["runs", "inbox"]


@given(positions, st.sampled_from(LIST_NAMES))
def test_a_cursor_reads_back_as_its_position(
    position: paging.Position, list_name: paging.ListName
) -> None:
    cursor = paging.encode(list_name, position)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", cursor)
    assert len(cursor) <= MAX_CURSOR_CHARS
    assert paging.decode(list_name, cursor) == position


@given(st.text(max_size=600))
def test_any_other_text_is_a_validation_error_naming_after(text: str) -> None:
    try:
        paging.decode("runs", text)
    except ValidationFailed as exc:
        assert [d["field"] for d in exc.details] == ["after"]


def test_a_cursor_of_one_list_is_refused_by_the_other() -> None:
    cursor = paging.encode("inbox", paging.Position(datetime.now(UTC), "r"))
    with pytest.raises(ValidationFailed, match="run inbox") as caught:
        paging.decode("runs", cursor)
    assert caught.value.details == [{"field": "after", "type": "cursor_of_another_list"}]


@pytest.mark.parametrize("limit", [0, -1, paging.MAX_LIMIT + 1])
def test_a_limit_out_of_bounds_is_refused(limit: int) -> None:
    with pytest.raises(ValidationFailed) as caught:
        paging.check_limit(limit)
    assert caught.value.details[0]["field"] == "limit"


def test_the_first_page_starts_before_everything() -> None:
    assert paging.start("runs", None) == {"after_at": None, "after_id": None}
    assert paging.split([1, 2, 3], 2) == ([1, 2], True)
    assert paging.split([1, 2], 2) == ([1, 2], False)
