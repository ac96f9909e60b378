"""The base of every contract: camelCase on the wire, unknown fields rejected, and only values
PostgreSQL can store (no NUL character, no lone surrogate, no NaN) let through."""

from __future__ import annotations

import math
from typing import Annotated, Any, TypeVar, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    GetJsonSchemaHandler,
)
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError
from typing_extensions import TypeAliasType


class Contract(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, alias_generator=to_camel)

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True)


# PostgreSQL's text and jsonb cannot hold U+0000, a lone surrogate cannot be encoded to UTF-8 at
# all, and jsonb has no NaN or Infinity (Python's json module accepts all of them). Caught here,
# once, every request fails closed with a validation_error naming the field instead of reaching
# the database and coming back as a 500 (CLI and HTTP validate through these same models).
NUL_MESSAGE = "must not contain a NUL character (\\u0000): PostgreSQL cannot store it"


def _text_problem(value: str) -> tuple[str, str] | None:
    if "\x00" in value:
        return "nul_character", NUL_MESSAGE
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "invalid_unicode", "must be valid Unicode text (it holds a lone surrogate)"
    return None


def storable_text(value: str) -> str:
    """A string PostgreSQL can store, or a validation error."""
    problem = _text_problem(value)
    if problem is not None:
        raise PydanticCustomError(problem[0], problem[1])
    return value


def _printable(key: str) -> str:
    """A key as it can be shown in a message: control characters and surrogates escaped."""
    return "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in key)


def _json_problem(value: Any) -> tuple[str, str, str] | None:
    """A value in a JSON document PostgreSQL's jsonb would refuse, as (error type,
    message, path inside the document). Walks with its own stack: a document nested as deep as
    the JSON parser allows must not exhaust Python's recursion limit here."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            problem = _text_problem(item)
            if problem is not None:
                return problem[0], problem[1], path
        elif isinstance(item, float) and not math.isfinite(item):
            return "non_finite_number", "must not hold NaN or Infinity (not JSON)", path
        elif isinstance(item, dict):
            for key, child in item.items():
                shown = _printable(str(key))
                child_path = f"{path}.{shown}" if path else shown
                problem = _text_problem(str(key))
                if problem is not None:
                    return problem[0], f"a key {problem[1]}", child_path
                stack.append((child, child_path))
        elif isinstance(item, list):
            stack.extend((child, f"{path}[{i}]") for i, child in enumerate(item))
    return None


T = TypeVar("T")


def storable_json(value: T) -> T:
    """A JSON value PostgreSQL's jsonb can store, or a validation error whose `path` (inside
    the field) says where the bad value sits."""
    problem = _json_problem(value)
    if problem is not None:
        kind, message, path = problem
        raise PydanticCustomError(kind, message, {"path": path})
    return value


# What the JSON schema (and so /openapi.json) says about these types, so that a client, or a
# generator of test requests, knows the rule: no NUL in any text or key, at any depth.
NO_NUL_PATTERN = "^[^\\u0000]*$"


class _NoNul:
    """Schema-only marker: strings get the no-NUL pattern, objects a pattern on their keys."""

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        if schema.get("type") == "string":
            schema["pattern"] = NO_NUL_PATTERN
        elif schema.get("type") == "object":
            schema["propertyNames"] = {"pattern": NO_NUL_PATTERN}
        return schema


_SchemaText = Annotated[str, _NoNul]
# The documented shape of a storable JSON value; validation is `storable_json`'s walk (one error
# naming the path, no recursion limit), this alias only describes it.
StorableJson = TypeAliasType(  # type: ignore[misc]  # mypy cannot follow the recursion
    "StorableJson",
    Union[  # noqa: UP007 -- a runtime value with forward references, not an annotation
        _SchemaText,
        float,
        bool,
        list["StorableJson"],  # type: ignore[misc]
        Annotated[dict[str, "StorableJson"], _NoNul],  # type: ignore[misc]
        None,
    ],
)


def _unchanged(value: Any) -> Any:
    return value


def _described_as(schema_type: Any) -> BeforeValidator:
    """Schema-only: document the field as `schema_type` without validating it as that."""
    return BeforeValidator(_unchanged, json_schema_input_type=schema_type)


Text = Annotated[str, AfterValidator(storable_text), _NoNul]
JsonObject = Annotated[
    dict[str, Any],
    _described_as(Annotated[dict[str, StorableJson], _NoNul]),
    AfterValidator(storable_json),
]
JsonList = Annotated[list[Any], _described_as(list[StorableJson]), AfterValidator(storable_json)]


def _whole(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


# An integer as JSON Schema counts one: 5 and 5.0 alike (a generator of valid requests sends
# both), but never "5", 5.5 or true. Bounds go before it in `Annotated`, or pydantic cannot show
# them in the JSON schema: `Annotated[int, Strict(), Field(ge=1), WHOLE]`.
WHOLE = BeforeValidator(_whole)


def error_details(errors: list[Any]) -> tuple[str, list[dict[str, Any]]]:
    """Pydantic (or FastAPI) validation errors as (one-line message, field details). A bad value
    deep inside a JSON field is named by its full path (`inputs.a.b`)."""
    details = []
    for err in errors:
        loc = [str(part) for part in err.get("loc", ()) if part != "body"]
        field = ".".join(loc)
        inner = str((err.get("ctx") or {}).get("path") or "")
        if inner:
            field += inner if inner.startswith("[") or not field else "." + inner
        details.append({"field": field or None, "type": err.get("type"), "message": err.get("msg")})
    first = details[0] if details else {"field": None, "message": "invalid request"}
    message = f"{first['field']}: {first['message']}" if first["field"] else str(first["message"])
    if len(details) > 1:
        message += f" (and {len(details) - 1} more)"
    return message, details
