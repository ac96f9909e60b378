"""Keyset paging for the lists that grow (`run list`, `run inbox`): the page size, and the cursor
that says where the next page starts.

A cursor is the sort key of a page's last item — a timestamp and a run id — wrapped so that
clients treat it as opaque: URL-safe base64 (no padding) of a small JSON object that also names
the list it came from. A page after a cursor starts strictly after that key, so runs created or
removed between two requests never make a later page repeat or skip a run that was there."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sisu.contracts.runs import MAX_CURSOR_CHARS
from sisu.errors import ValidationFailed

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000

ListName = Literal["runs", "inbox"]
_COMMANDS: dict[str, str] = {"runs": "run list (GET /runs)", "inbox": "run inbox (GET /inbox)"}
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class Position:
    """Where a page ends: its last item's sort key."""

    at: datetime
    run_id: str

    def params(self) -> dict[str, Any]:
        return {"after_at": self.at, "after_id": self.run_id}


FIRST_PAGE: dict[str, Any] = {"after_at": None, "after_id": None}


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationFailed(
            f"limit must be between 1 and {MAX_LIMIT}",
            details=[{"field": "limit", "input": limit, "min": 1, "max": MAX_LIMIT}],
        )
    return limit


def encode(list_name: ListName, position: Position) -> str:
    document = {"list": list_name, "at": position.at.isoformat(), "id": position.run_id}
    raw = json.dumps(document, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _malformed(cursor: str) -> ValidationFailed:
    return ValidationFailed(
        "after: not a cursor sisu gave out; pass the `next` of the previous page as it was",
        details=[{"field": "after", "type": "invalid_cursor", "input": cursor[:80]}],
    )


def decode(list_name: ListName, cursor: str) -> Position:
    """The position a cursor of `list_name` holds, or a validation error naming `after`."""
    if len(cursor) > MAX_CURSOR_CHARS or not _BASE64URL.fullmatch(cursor):
        raise _malformed(cursor)
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        document = json.loads(raw)
    except ValueError:  # binascii.Error, UnicodeDecodeError and JSONDecodeError all are
        raise _malformed(cursor) from None
    if not (
        isinstance(document, dict)
        and set(document) == {"list", "at", "id"}
        and all(isinstance(v, str) for v in document.values())
        and document["list"] in _COMMANDS
        and document["id"]
        and "\x00" not in document["id"]
    ):
        raise _malformed(cursor)
    try:
        at = datetime.fromisoformat(document["at"])
    except ValueError:
        raise _malformed(cursor) from None
    if at.tzinfo is None:
        raise _malformed(cursor)
    if document["list"] != list_name:
        raise ValidationFailed(
            f"after: this cursor pages `{_COMMANDS[document['list']]}`, "
            f"not `{_COMMANDS[list_name]}`",
            details=[{"field": "after", "type": "cursor_of_another_list"}],
        )
    return Position(at, document["id"])


def start(list_name: ListName, after: str | None) -> dict[str, Any]:
    """The query parameters that start a page after `after` (the first page when None)."""
    return FIRST_PAGE if after is None else decode(list_name, after).params()


def split(rows: list[Any], limit: int) -> tuple[list[Any], bool]:
    """The page's rows from `limit + 1` fetched, and whether there is more after them."""
    return rows[:limit], len(rows) > limit
