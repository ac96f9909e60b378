"""The error envelope `{error, message, details}` every failure answers with, over HTTP and from
the CLI under --json, checked one way everywhere; and a CLI success's JSON."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.cli import Result
from tests.support.runview import ERROR_KEYS


def _envelope(body: Any, code: str | None) -> dict[str, Any]:
    assert isinstance(body, dict) and set(body) == ERROR_KEYS, body
    if code is not None:
        assert body["error"] == code, body
    assert isinstance(body["message"], str) and body["message"], body
    return body


def error_of(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The envelope of an HTTP answer with this status (and this error code, when given)."""
    assert response.status_code == status, response.text
    return _envelope(response.json(), code)


def cli_error(result: Result, exit_code: int, code: str | None = None) -> dict[str, Any]:
    """The envelope a `sisu … --json` printed on stdout as it exited with `exit_code`."""
    assert result.exit_code == exit_code, (result.exit_code, result.stdout, result.stderr)
    return _envelope(result.json(), code)


def cli_ok(result: Result) -> Any:
    """The JSON a `sisu … --json` printed as it exited 0."""
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr)
    return result.json()
