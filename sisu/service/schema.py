"""A small JSON Schema subset (type, properties, required, additionalProperties, enum, items)
for checking human answers against a question card — enough for the schemas sisu emits."""

from __future__ import annotations

from typing import Any

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "boolean": (bool,),
    "null": (type(None),),
    "number": (int, float),
    "integer": (int,),
}


def errors(  # noqa: C901 — one branch per JSON Schema keyword
    instance: Any, schema: dict[str, Any], path: str = "payload"
) -> list[dict[str, str]]:
    """Every mismatch as {field, message}; empty when the instance fits."""
    found: list[dict[str, str]] = []
    expected = schema.get("type")
    if isinstance(expected, str) and expected in _TYPES:
        ok = isinstance(instance, _TYPES[expected])
        if expected in ("number", "integer") and isinstance(instance, bool):
            ok = False
        if not ok:
            return [{"field": path, "message": f"expected {expected}"}]
    if "enum" in schema and instance not in schema["enum"]:
        found.append({"field": path, "message": f"must be one of {schema['enum']}"})
    if isinstance(instance, dict):
        props: dict[str, Any] = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in instance:
                found.append({"field": f"{path}.{name}", "message": "required"})
        for name, value in instance.items():
            if name in props:
                found.extend(errors(value, props[name], f"{path}.{name}"))
            elif schema.get("additionalProperties") is False:
                found.append({"field": f"{path}.{name}", "message": "not allowed"})
    if isinstance(instance, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(instance):
            found.extend(errors(item, schema["items"], f"{path}[{i}]"))
    return found
