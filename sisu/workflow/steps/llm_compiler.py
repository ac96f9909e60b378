"""The `llm` compiler: a pydantic-ai agent plans the intent (see docs/LLM-COMPILER.md).

Each model request is its own DBOS step (pydantic-ai's `DBOSDurability`), run outside any
database transaction; a request whose response was checkpointed is never sent again. Every
request is recorded in `app.opencode_calls` by `RecordingModel`, on a short connection opened
after the response is in. When the request names a repository, the model may read it with the
read-only tools of `repo_tools` (each call a DBOS step too). The model returns only the creative
part (`PlanOut`); sisu builds the plan dict of the built-in compiler's contract from it. The
providers are pydantic-ai's openai, anthropic and google (Gemini API and Vertex)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast
from weakref import WeakKeyDictionary

from pydantic import BaseModel, Field

from sisu import metrics
from sisu.errors import ValidationFailed
from sisu.workflow.steps.compiler import MAX_TASKS, approval_node
from sisu.workflow.steps.errors import (
    BudgetExceeded,
    InvalidPlan,
    RetriesExhausted,
    StepError,
)

if TYPE_CHECKING:
    from pydantic_ai import Agent
    from pydantic_ai.models import Model

    from sisu.workflow.steps.repo_tools import RepoReader


@dataclass(frozen=True)
class Provider:
    """How sisu reaches one pydantic-ai provider."""

    kind: str  # the model family: openai, anthropic, google (Gemini API) or google-cloud (Vertex)
    # The provider's own key variables, read when SISU_LLM_API_KEY is unset, in this order.
    key_vars: tuple[str, ...]
    # Whether a worker without a key (and, for openai, without SISU_LLM_BASE_URL) cannot work.
    # Vertex authenticates with Google's application default credentials instead.
    needs_key: bool = True


_GEMINI = Provider("google", ("GOOGLE_API_KEY", "GEMINI_API_KEY"))
_VERTEX = Provider("google-cloud", (), needs_key=False)
# pydantic-ai's provider names; `openai` also reaches any OpenAI-compatible server (Ollama, vLLM,
# llama.cpp, LiteLLM) through SISU_LLM_BASE_URL. `google-gla` / `google-vertex` are the names
# pydantic-ai used before 2.0 for what it now calls `google` / `google-cloud`: both are accepted.
PROVIDERS: dict[str, Provider] = {
    "openai": Provider("openai", ("OPENAI_API_KEY",)),
    "anthropic": Provider("anthropic", ("ANTHROPIC_API_KEY",)),
    "google-gla": _GEMINI,
    "google": _GEMINI,
    "google-vertex": _VERTEX,
    "google-cloud": _VERTEX,
}
# The agent's name prefixes its DBOS step names (`sisu_compiler__model.request`), which are
# recorded with every in-flight run: never change it.
AGENT_NAME = "sisu_compiler"
STEP_ID = "CompileST"
INSTRUCTIONS = (
    "You plan a change for sisu, a durable intent engine. Given a goal, its inputs and its "
    "constraints, return: a one-paragraph summary; the files to write, each with a relative "
    "path inside the workspace and its full content; the names of the tests and, when a "
    "command runs them, testCommand; the tasks to deliver (short strings, at most "
    f"{MAX_TASKS}); and a question only when a human must decide something before the tasks run."
)
REPO_INSTRUCTIONS = (
    "The change is for a git repository; the workspace the files are written to is a checkout "
    "of it at the intent's commit. list_files and read_file read that commit (read-only): look "
    "at what you need before you plan, and give paths relative to the repository's root."
)


@dataclass(frozen=True)
class LlmConfig:
    provider: str  # as the operator wrote it (a key of PROVIDERS)
    model_name: str
    base_url: str | None
    # SISU_LLM_API_KEY, else the provider's own variable (key_var names which); never printed.
    api_key: str | None = field(default=None, repr=False)
    key_var: str | None = None

    @property
    def model(self) -> str:
        return f"{self.provider}:{self.model_name}"

    @property
    def kind(self) -> str:
        return PROVIDERS[self.provider].kind


def config_from(
    model: str | None,
    base_url: str | None,
    api_key: str | None,
    environ: Mapping[str, str] | None = None,
) -> LlmConfig:
    """The worker's model settings, or a validation_error naming the variable to set.
    `environ` (default: the process's) supplies the provider's own key variables."""
    env = os.environ if environ is None else environ
    if not model:
        raise ValidationFailed(
            "--compiler llm needs a model: set SISU_LLM_MODEL=provider:name "
            "(e.g. openai:gpt-4.1-mini, or openai:llama3.1 with SISU_LLM_BASE_URL for Ollama)",
            details=[{"field": "SISU_LLM_MODEL"}],
        )
    provider, _, name = model.partition(":")
    if provider not in PROVIDERS or not name:
        raise ValidationFailed(
            f"SISU_LLM_MODEL={model!r}: unknown provider or missing model name; set "
            f"SISU_LLM_MODEL=provider:name with provider one of {', '.join(PROVIDERS)} (any "
            "OpenAI-compatible server through SISU_LLM_BASE_URL)",
            details=[{"field": "SISU_LLM_MODEL", "providers": list(PROVIDERS)}],
        )
    spec = PROVIDERS[provider]
    key, key_var = (api_key, "SISU_LLM_API_KEY") if api_key else (None, None)
    for var in spec.key_vars:
        if key is None and env.get(var):
            key, key_var = env[var], var
    # A local OpenAI-compatible server may need no key.
    if key is None and spec.needs_key and not (spec.kind == "openai" and base_url):
        own = " or ".join(spec.key_vars)
        raise ValidationFailed(
            f"SISU_LLM_MODEL={model!r} needs an API key: set SISU_LLM_API_KEY (or {own})",
            details=[{"field": "SISU_LLM_API_KEY", "alternatives": list(spec.key_vars)}],
        )
    return LlmConfig(
        provider=provider, model_name=name, base_url=base_url, api_key=key, key_var=key_var
    )


class FileOut(BaseModel):
    path: str = Field(description="relative path inside the workspace")
    content: str


class PlanOut(BaseModel):
    """What the model returns (as pydantic-ai's `final_result` tool)."""

    summary: str
    files: list[FileOut] = Field(default_factory=list)
    tests: list[str] = Field(default_factory=list)
    testCommand: str | None = None
    tasks: list[str] = Field(default_factory=list, max_length=MAX_TASKS)
    question: str | None = None


def plan_from(out: PlanOut, request: dict[str, Any], compiler: str, model: str) -> dict[str, Any]:
    """The plan dict the later steps read, in the built-in compiler's contract."""
    plan_id = hashlib.sha256(out.model_dump_json().encode()).hexdigest()[:16]
    nodes: list[dict[str, Any]] = [
        {"id": "n1", "kind": "compute", "label": out.summary[:200]},
        {"id": "n2", "kind": "decision", "label": "choose the tasks to execute"},
        {"id": "n3", "kind": "io", "label": "deliver the tasks"},
    ]
    if out.question:
        nodes.insert(1, approval_node(out.question, request.get("constraints") or {}))
    return {
        "compiler": compiler,
        "model": model,
        "planId": plan_id,
        "summary": out.summary,
        "nodes": nodes,
        "patch": {"files": [f.model_dump() for f in out.files]},
        "tests": [{"name": t} for t in out.tests],
        "testCommand": out.testCommand,
        "tasks": [
            {"taskKey": f"task-{i + 1}", "payload": {"planId": plan_id, "index": i + 1, "task": t}}
            for i, t in enumerate(out.tasks)
        ],
    }


def is_transient_model_error(exc: BaseException) -> bool:
    """Worth another attempt of the same request: rate limits, server errors, lost or slow
    connections. Authentication, an unknown model or a refused request are not."""
    from pydantic_ai.exceptions import (
        ModelConnectionError,
        ModelRateLimitError,
        ModelServerError,
        ModelUnavailableError,
    )

    from sisu.db import faults

    # A database failure while recording the call is worth another attempt too.
    return faults.is_transient(exc) or isinstance(
        exc, ModelRateLimitError | ModelServerError | ModelUnavailableError | ModelConnectionError
    )


def provider_model(cfg: LlmConfig) -> Model:
    """A fresh pydantic-ai model for `cfg`, with its own HTTP client. Building one sends no
    request (except that Vertex, without a key, looks for Google's default credentials)."""
    kind = cfg.kind
    if kind == "openai":
        from pydantic_ai.models.openai import OpenAIChatModel
        from pydantic_ai.providers.openai import OpenAIProvider

        # A local server (SISU_LLM_BASE_URL) may need no key, but the client insists on one.
        key = cfg.api_key or ("none" if cfg.base_url else None)
        return OpenAIChatModel(
            cfg.model_name, provider=OpenAIProvider(base_url=cfg.base_url, api_key=key)
        )
    if kind == "anthropic":
        from pydantic_ai.models.anthropic import AnthropicModel
        from pydantic_ai.providers.anthropic import AnthropicProvider

        return AnthropicModel(
            cfg.model_name, provider=AnthropicProvider(api_key=cfg.api_key, base_url=cfg.base_url)
        )
    from pydantic_ai.models.google import GoogleModel

    if kind == "google":
        from pydantic_ai.providers.google import GoogleProvider

        return GoogleModel(
            cfg.model_name, provider=GoogleProvider(api_key=cfg.api_key, base_url=cfg.base_url)
        )
    from pydantic_ai.providers.google_cloud import GoogleCloudProvider

    # Without SISU_LLM_API_KEY (an express-mode key) the provider finds its own credentials:
    # GOOGLE_APPLICATION_CREDENTIALS, gcloud's, GOOGLE_API_KEY; GOOGLE_CLOUD_PROJECT/LOCATION.
    return GoogleModel(
        cfg.model_name,
        provider=GoogleCloudProvider(api_key=cfg.api_key, base_url=cfg.base_url),
    )


def _per_loop_model(cfg: LlmConfig) -> Model:
    """The configured model, one client per event loop: each DBOS workflow thread runs the
    agent on a loop of its own, and a pooled HTTP connection belongs to the loop that opened
    it (one shared client failed every second run). The first one is built at once, so a
    provider that cannot be built stops the worker at start."""
    from pydantic_ai.models import Model as ModelBase
    from pydantic_ai.models.wrapper import WrapperModel

    try:
        first = provider_model(cfg)
    except Exception as exc:
        # e.g. Vertex without credentials (google.auth's DefaultCredentialsError).
        raise ValidationFailed(
            f"SISU_LLM_MODEL={cfg.model}: the provider cannot be set up: "
            f"{type(exc).__name__}: {exc}; set SISU_LLM_API_KEY or the provider's credentials",
            details=[{"field": "SISU_LLM_API_KEY"}],
        ) from exc

    class PerLoopModel(WrapperModel):
        def __init__(self) -> None:
            super().__init__(first)
            self._per_loop: WeakKeyDictionary[asyncio.AbstractEventLoop, ModelBase] = (
                WeakKeyDictionary()
            )

        async def request(self, messages: Any, model_settings: Any, params: Any) -> Any:
            loop = asyncio.get_running_loop()
            model = self._per_loop.get(loop) or self._per_loop.setdefault(loop, provider_model(cfg))
            return await model.request(messages, model_settings, params)

    return PerLoopModel()


def _recording(inner: Model, url: str, *, compiler: str, label: str) -> Model:
    """`inner`, recording each request in `app.opencode_calls` after it ended, inside its DBOS
    step: no connection is held while the model thinks."""
    from pydantic_ai.models.wrapper import WrapperModel

    class RecordingModel(WrapperModel):
        async def request(self, messages: Any, model_settings: Any, params: Any) -> Any:
            from dbos import DBOS
            from pydantic_ai.messages import ModelMessagesTypeAdapter

            started = time.monotonic()
            response, error = None, None
            try:
                response = await super().request(messages, model_settings, params)
                if compiler != "replay":  # a replayed response spent no tokens
                    usage = response.usage
                    metrics.model_tokens(label, usage.input_tokens, usage.output_tokens)
                return response
            except Exception as exc:
                error = {"code": type(exc).__name__, "message": str(exc)[:500]}
                raise
            finally:
                await _record(
                    url,
                    {
                        "run_id": DBOS.workflow_id,
                        "compiler": compiler,
                        "model": label,
                        "request": json.loads(ModelMessagesTypeAdapter.dump_json(messages)),
                        "response": (
                            json.loads(ModelMessagesTypeAdapter.dump_json([response]))[0]
                            if response is not None
                            else None
                        ),
                        "input_tokens": response.usage.input_tokens if response else None,
                        "output_tokens": response.usage.output_tokens if response else None,
                        "latency_ms": round((time.monotonic() - started) * 1000),
                        "error": error,
                    },
                )

    return RecordingModel(inner)


async def _record(url: str, row: dict[str, Any]) -> None:
    import psycopg
    from psycopg.types.json import Jsonb

    from sisu.db.queries import q

    params = {
        **row,
        "step_id": STEP_ID,
        "request": Jsonb(row["request"]),
        "response": Jsonb(row["response"]) if row["response"] is not None else None,
        "error": Jsonb(row["error"]) if row["error"] is not None else None,
    }
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(q("insert_opencode_call"), params)


class LlmCompiler:
    """Plans outside any transaction, in the workflow: `draft()` runs the agent, whose model
    requests are DBOS steps; CompileST then commits the plan."""

    plans_outside = True

    def __init__(
        self,
        inner: Model,
        url: str,
        *,
        name: str,
        label: str,
        max_attempts: int,
        backoff: float,
        reader_for: Callable[[dict[str, Any]], RepoReader | None] | None = None,
    ) -> None:
        from pydantic_ai import Agent, RunContext
        from pydantic_ai.durable_exec.dbos import DBOSDurability, StepConfig

        from sisu.workflow.steps.repo_tools import RepoReader, repo_for, repo_toolset

        self.name, self.label = name, label
        # What the repository tools read for a request: its repository at its commit (None:
        # no tools); the replay compiler reads its recording instead.
        self.reader_for = reader_for or repo_for
        step_config = cast(
            StepConfig,
            {
                "retries_allowed": True,
                "max_attempts": max_attempts,
                "interval_seconds": backoff,
                "backoff_rate": 2.0,
                "should_retry": is_transient_model_error,
            },
        )
        # Built before DBOS launches: recovery at launch may call it at once.
        self.agent: Agent[RepoReader | None, PlanOut] = Agent(
            _recording(inner, url, compiler=name, label=label),
            name=AGENT_NAME,
            deps_type=cast(Any, RepoReader | None),
            output_type=PlanOut,
            instructions=INSTRUCTIONS,
            # Offered only when the run has a repository (the deps).
            toolsets=[repo_toolset(AGENT_NAME)],
            # No hidden client retries: DBOS retries a request, and each one is recorded.
            model_settings={"max_retries": 0},
            capabilities=[
                DBOSDurability(
                    model_step_config=step_config,
                    # Each tool call is a DBOS step, numbered as it starts: one at a time, so a
                    # recovered run meets its recorded steps in the same order.
                    parallel_execution_mode="sequential",
                )
            ],
        )

        @self.agent.instructions
        def repository_note(ctx: RunContext[RepoReader | None]) -> str | None:
            return REPO_INSTRUCTIONS if ctx.deps is not None else None

    def compile(self, request: dict[str, Any]) -> dict[str, Any]:
        raise StepError("the llm compiler plans in the workflow (draft), not in a transaction")

    def draft(self, request: dict[str, Any], budget: Callable[[], Any]) -> dict[str, Any]:
        from pydantic_ai.exceptions import UnexpectedModelBehavior, UsageLimitExceeded

        from sisu.compat import DBOSMaxStepRetriesExceeded

        reader = self.reader_for(request)
        asked: dict[str, Any] = {
            "goal": request["goal"],
            "inputs": request.get("inputs") or {},
            "constraints": request.get("constraints") or {},
        }
        if reader is not None and request.get("commit"):
            asked["repository"] = {"commit": request["commit"]}
        prompt = json.dumps(asked, sort_keys=True)
        try:
            result = self.agent.run_sync(prompt, deps=reader, usage_limits=budget())
        except StepError:
            raise  # the repository could not be read: already says what failed
        except UsageLimitExceeded as exc:
            raise BudgetExceeded(f"the run's model budget is spent: {exc}") from exc
        except DBOSMaxStepRetriesExceeded as exc:
            last = exc.errors[-1] if exc.errors else exc
            raise RetriesExhausted(
                f"{STEP_ID}: model {self.label} failed {len(exc.errors)} time(s), last: "
                f"{type(last).__name__}: {last}"
            ) from exc
        except UnexpectedModelBehavior as exc:
            raise InvalidPlan(f"model {self.label} returned no valid plan: {exc}") from exc
        except Exception as exc:
            raise StepError(_permanent_message(self.label, exc)) from exc
        return plan_from(result.output, request, self.name, self.label)


def _permanent_message(model: str, exc: Exception) -> str:
    from pydantic_ai.exceptions import ModelAuthenticationError, ModelNotFoundError

    if isinstance(exc, ModelAuthenticationError):
        return f"model {model} refused the key: set SISU_LLM_API_KEY ({exc})"
    if isinstance(exc, ModelNotFoundError):
        return f"model {model} is unknown to the server: set SISU_LLM_MODEL ({exc})"
    return f"model {model}: {type(exc).__name__}: {exc}"


def llm_compiler(cfg: LlmConfig, url: str, *, max_attempts: int, backoff: float) -> LlmCompiler:
    return LlmCompiler(
        _per_loop_model(cfg),
        url,
        name="llm",
        label=cfg.model,
        max_attempts=max_attempts,
        backoff=backoff,
    )
