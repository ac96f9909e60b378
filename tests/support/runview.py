"""The RunView on the wire: its keys in DESIGN.md's order, the error body's keys, and the
normaliser that makes two identical runs compare equal against a golden file."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

# DESIGN.md, Interfaces: the RunView and step key order is part of the contract; the queue-policy
# issue added the run's lane and priority after traceId ("visible in RunView"); the live-compiler
# issue added `compiler: {name, model}` (which compiler planned the run) after them.
DESIGN_RUNVIEW_KEYS = [
    "runId",
    "intentId",
    "workflowId",
    "status",
    "nextAction",
    "lastStep",
    "retryCount",
    "traceId",
    "lane",
    "priority",
    "compiler",
    "steps",
    "artifacts",
    "createdAt",
    "updatedAt",
]
STEP_KEYS = ["stepId", "attempt", "phase", "output", "error", "startedAt", "finishedAt"]


def runview_keys() -> list[str]:
    """The wire keys of the RunView model, in its declared order."""
    from sisu.contracts.runs import RunView

    return [field.alias or name for name, field in RunView.model_fields.items()]


def assert_runview_shape(view: dict[str, Any]) -> None:
    """A RunView on the wire: the model's keys in the model's order, DESIGN.md's keys among them
    in DESIGN.md's order, and every step with exactly the step keys in order. (Whether the model
    has *only* DESIGN.md's keys is checked once, in tests/unit/test_contracts.py.)"""
    keys = list(view)
    assert keys == runview_keys(), keys
    assert [k for k in keys if k in DESIGN_RUNVIEW_KEYS] == DESIGN_RUNVIEW_KEYS, keys
    for step in view["steps"]:
        assert list(step) == STEP_KEYS, step


ERROR_KEYS = {"error", "message", "details"}
COUNTED_TABLES = ["app.intents", "app.runs", "dbos.workflow_status"]


ISO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
TIME_KEYS = {"createdAt", "updatedAt", "startedAt", "finishedAt"}


def normalise_runview(view: dict[str, Any], *, run_id: str, workspaces: Path) -> Any:
    """Replace what differs between two identical runs — the id, timestamps, digests and the
    workspace location — with placeholders. Anything malformed is left as it is, so that it
    shows up as a difference against the golden file."""
    workspace_uri = workspaces.as_uri()
    workspace_path = str(workspaces)

    def walk(value: Any, key: str | None) -> Any:
        if isinstance(value, dict):
            return {k: walk(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, key) for v in value]
        if isinstance(value, str):
            if key in TIME_KEYS and ISO_TIME.match(value):
                return "<time>"
            if key == "sha256" and SHA256.match(value):
                return "<sha256>"
            value = value.replace(workspace_uri, "file://<workspaces>")
            value = value.replace(workspace_path, "<workspaces>")
            return value.replace(run_id, "<runId>")
        return value

    return walk(view, None)


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
