"""The base of every contract: camelCase on the wire, unknown fields rejected."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class Contract(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, alias_generator=to_camel)

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True)


def error_details(errors: list[Any]) -> tuple[str, list[dict[str, Any]]]:
    """Pydantic (or FastAPI) validation errors as (one-line message, field details)."""
    details = []
    for err in errors:
        loc = [str(part) for part in err.get("loc", ()) if part != "body"]
        details.append(
            {"field": ".".join(loc) or None, "type": err.get("type"), "message": err.get("msg")}
        )
    first = details[0] if details else {"field": None, "message": "invalid request"}
    message = f"{first['field']}: {first['message']}" if first["field"] else str(first["message"])
    if len(details) > 1:
        message += f" (and {len(details) - 1} more)"
    return message, details
