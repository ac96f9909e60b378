"""Operator input on the command line: JSON objects given inline or as @file, intent files,
integer flags, and their validation against the contracts, each failure a validation_error
naming the flag."""

from __future__ import annotations

import json as jsonlib
from pathlib import Path
from typing import Any


def parse_json_arg(value: str | None, name: str) -> dict[str, Any]:
    """`--inputs '{"a":1}'` or `--inputs @file.json`: an object, or a validation_error."""
    from sisu.errors import ValidationFailed

    if value is None:
        return {}
    text = value
    if value.startswith("@"):
        try:
            text = Path(value[1:]).read_text()
        except OSError as exc:
            raise ValidationFailed(
                f"--{name}: cannot read {value[1:]}: {exc.strerror}", details=[{"field": name}]
            ) from exc
    try:
        parsed = jsonlib.loads(text)
    # RecursionError: nested deeper than the parser goes; still the operator's input.
    except (ValueError, RecursionError) as exc:
        raise ValidationFailed(
            f"--{name} is not valid JSON: {exc}", details=[{"field": name}]
        ) from exc
    if not isinstance(parsed, dict):
        raise ValidationFailed(f"--{name} must be a JSON object", details=[{"field": name}])
    if name == "inputs" and value.startswith("@") and "goal" in parsed:
        from sisu.cli import _output

        _output.info(
            f"hint: {value[1:]} has a goal, like a whole intent; it is used as the inputs only. "
            f"To submit it as the intent, use: sisu intent create --file {value[1:]}"
        )
    return parsed


def read_intent_file(path: str) -> dict[str, Any]:
    """`--file intent.json` or `--file -` (stdin): a JSON object in the shape of a
    `POST /intents` body, or a validation_error naming the file."""
    import sys

    from sisu.errors import ValidationFailed

    shown = "stdin" if path == "-" else path
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as exc:
        raise ValidationFailed(
            f"--file: cannot read {shown}: {exc.strerror}", details=[{"field": "file"}]
        ) from exc
    except UnicodeDecodeError as exc:
        raise ValidationFailed(
            f"--file: {shown} is not UTF-8 text: {exc.reason}", details=[{"field": "file"}]
        ) from exc
    try:
        parsed = jsonlib.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ValidationFailed(
            f"--file: {shown} is not valid JSON: {exc}", details=[{"field": "file"}]
        ) from exc
    if not isinstance(parsed, dict):
        raise ValidationFailed(
            f"--file: {shown} must hold a JSON object (an intent: goal, inputs, constraints, ...)",
            details=[{"field": "file"}],
        )
    return parsed


def validate(model: type[Any], data: dict[str, Any]) -> Any:
    """Validate against a contract; pydantic errors become a validation_error with field details."""
    from pydantic import ValidationError

    from sisu.contracts.base import error_details
    from sisu.errors import ValidationFailed

    try:
        return model.model_validate(data)
    except ValidationError as exc:
        message, details = error_details(list(exc.errors()))
        raise ValidationFailed(message, details=details) from exc


def integer_or_text(text: str) -> int | str:
    """An integer flag kept as text when it is not one, so validation reports it like HTTP."""
    try:
        return int(text)
    except ValueError:
        return text
