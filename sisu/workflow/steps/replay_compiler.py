"""The `replay` compiler: plans with a run's recorded model responses instead of a model, so a
run is reproduced exactly, offline. The agent, its output validation and the plan it builds are
the `llm` compiler's; only the model is a function serving the recorded responses in order (the
n-th request of a run gets the n-th response). Its requests are recorded too, as `replay`.
A recorded run that read its repository (`list_files` / `read_file`) gets the recorded answers
to the same calls, so a replay needs neither the model nor the repository."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sisu.db.connection import connect
from sisu.db.queries import q
from sisu.errors import ValidationFailed
from sisu.workflow.steps.llm_compiler import LlmCompiler
from sisu.workflow.steps.repo_tools import TOOL_NAMES


def load_calls(source: str, url: str) -> list[dict[str, Any]]:
    """The successful model calls of `source` (a run id, or a file written by `sisu run calls ID
    --json`), oldest first: their requests and responses. A validation_error naming
    SISU_REPLAY_FROM when there are none."""
    path = Path(source)
    if path.is_file():
        try:
            calls = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ValidationFailed(
                f"SISU_REPLAY_FROM={source}: not a file from `sisu run calls ID --json`: {exc}",
                details=[{"field": "SISU_REPLAY_FROM"}],
            ) from exc
    else:
        with connect(url) as conn:
            calls = conn.execute(q("run_compiler_calls"), {"run_id": source}).fetchall()
    recorded = [
        {"request": c.get("request") or [], "response": c["response"]}
        for c in calls
        if isinstance(c, dict)
        and c.get("compiler") in ("llm", "replay")
        and c.get("error") is None
        and c.get("response") is not None
    ]
    if not recorded:
        raise ValidationFailed(
            f"SISU_REPLAY_FROM={source}: no recorded model responses to replay; name a run "
            "planned with --compiler llm, or a file from `sisu run calls ID --json`",
            details=[{"field": "SISU_REPLAY_FROM"}],
        )
    return recorded


@dataclass(frozen=True)
class RecordedRepo:
    """The repository as a recorded run saw it: the answer each tool call got, by tool and
    path. A replayed response asks for the same paths, so it gets the same answers."""

    source: str
    answers: dict[tuple[str, str], Any]

    def _answer(self, tool: str, path: str) -> dict[str, Any]:
        if (tool, path) in self.answers:
            answer = self.answers[(tool, path)]
            return answer if isinstance(answer, dict) else {"content": answer}
        return {
            "error": "not_recorded",
            "message": f"the replay of {self.source} has no answer to {tool}({path!r})",
            "path": path,
        }

    def list_files(self, path: str) -> dict[str, Any]:
        return self._answer("list_files", path)

    def read_file(self, path: str) -> dict[str, Any]:
        return self._answer("read_file", path)


def recorded_repo(source: str, calls: list[dict[str, Any]]) -> RecordedRepo | None:
    """The repository tools' answers in `calls` (each call's request holds every earlier tool
    call and its return); None when the run read no repository."""
    from pydantic_ai.messages import (
        ModelMessagesTypeAdapter,
        ModelRequest,
        ModelResponse,
        ToolCallPart,
        ToolReturnPart,
    )

    asked: dict[str, tuple[str, str]] = {}
    answers: dict[tuple[str, str], Any] = {}
    for call in calls:
        for message in ModelMessagesTypeAdapter.validate_python(call["request"]):
            for part in message.parts:
                if (
                    isinstance(message, ModelResponse)
                    and isinstance(part, ToolCallPart)
                    and part.tool_name in TOOL_NAMES
                ):
                    path = part.args_as_dict().get("path", "")
                    asked[part.tool_call_id] = (part.tool_name, str(path))
                elif (
                    isinstance(message, ModelRequest)
                    and isinstance(part, ToolReturnPart)
                    and part.tool_call_id in asked
                ):
                    answers[asked[part.tool_call_id]] = part.content
    return RecordedRepo(source, answers) if answers else None


def replay_compiler(
    source: str, calls: list[dict[str, Any]], url: str, *, max_attempts: int, backoff: float
) -> LlmCompiler:
    from pydantic_ai.messages import ModelMessage, ModelMessagesTypeAdapter, ModelResponse
    from pydantic_ai.models.function import AgentInfo, FunctionModel

    recorded = [
        r
        for r in ModelMessagesTypeAdapter.validate_python([c["response"] for c in calls])
        if isinstance(r, ModelResponse)
    ]
    repo = recorded_repo(source, calls)

    def serve(messages: list[ModelMessage], _info: AgentInfo) -> ModelResponse:
        served = sum(1 for m in messages if isinstance(m, ModelResponse))
        if served >= len(recorded):
            raise RuntimeError(
                f"the replay of {source} has {len(recorded)} response(s); this run asked for more"
            )
        return recorded[served]

    label = f"replay:{Path(source).name if Path(source).is_file() else source}"
    return LlmCompiler(
        FunctionModel(serve, model_name="replay"),
        url,
        name="replay",
        label=label,
        max_attempts=max_attempts,
        backoff=backoff,
        # The recording, never the repository: the replay is exact and needs nothing else.
        reader_for=lambda _request: repo,
    )
