"""The `replay` compiler: plans with a run's recorded model responses instead of a model, so a
run is reproduced exactly, offline. The agent, its output validation and the plan it builds are
the `llm` compiler's; only the model is a function serving the recorded responses in order (the
n-th request of a run gets the n-th response). Its requests are recorded too, as `replay`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sisu.db.connection import connect
from sisu.db.queries import q
from sisu.errors import ValidationFailed
from sisu.workflow.steps.llm_compiler import LlmCompiler


def load_responses(source: str, url: str) -> list[dict[str, Any]]:
    """The successful model responses of `source`: a run id, or a file written by
    `sisu run calls ID --json`. A validation_error naming SISU_REPLAY_FROM when there are none."""
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
    responses = [
        c["response"]
        for c in calls
        if isinstance(c, dict)
        and c.get("compiler") in ("llm", "replay")
        and c.get("error") is None
        and c.get("response") is not None
    ]
    if not responses:
        raise ValidationFailed(
            f"SISU_REPLAY_FROM={source}: no recorded model responses to replay; name a run "
            "planned with --compiler llm, or a file from `sisu run calls ID --json`",
            details=[{"field": "SISU_REPLAY_FROM"}],
        )
    return responses


def replay_compiler(
    source: str, responses: list[dict[str, Any]], url: str, *, max_attempts: int, backoff: float
) -> LlmCompiler:
    from pydantic_ai.messages import ModelMessage, ModelMessagesTypeAdapter, ModelResponse
    from pydantic_ai.models.function import AgentInfo, FunctionModel

    recorded = [
        r
        for r in ModelMessagesTypeAdapter.validate_python(responses)
        if isinstance(r, ModelResponse)
    ]

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
    )
