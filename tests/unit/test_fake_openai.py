"""The fake OpenAI server against the real pydantic-ai OpenAI chat model and the real openai
client, over real HTTP on 127.0.0.1: what the llm compiler's tests will build on."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from openai import AsyncOpenAI
from pydantic import BaseModel
from pydantic_ai import Agent
from pydantic_ai.exceptions import ModelHTTPError
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

from tests.support.fake_openai import (
    FakeOpenAI,
    FakeRequest,
    output_tool_name,
    tool_call_completion,
)

KEY = "sk-fake-0123456789"


class Plan(BaseModel):
    summary: str
    files: list[str]


def plan_answer(request: FakeRequest) -> dict[str, Any]:
    return tool_call_completion(
        output_tool_name(request),
        {"summary": "write it", "files": ["PLAN.md"]},
        prompt_tokens=120,
        completion_tokens=30,
    )


def agent_for(fake: FakeOpenAI, *, max_retries: int = 0) -> Agent[None, Plan]:
    # max_retries=0: no hidden client retries — each model request is one HTTP request, so
    # sisu's step retries (and its call records) see every attempt.
    client = AsyncOpenAI(base_url=fake.base_url, api_key=KEY, max_retries=max_retries)
    model = OpenAIChatModel("fake-model", provider=OpenAIProvider(openai_client=client))
    return Agent(model, output_type=Plan)


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(respond=plan_answer, api_key=KEY) as server:
        yield server


def test_structured_output_over_real_http(fake: FakeOpenAI) -> None:
    result = agent_for(fake).run_sync("plan: say hello")

    assert result.output == Plan(summary="write it", files=["PLAN.md"])
    usage = result.usage
    assert (usage.requests, usage.input_tokens, usage.output_tokens) == (1, 120, 30)
    [request] = fake.chat_requests
    # agent.run sends a plain (non-streaming) request, offering the output as a tool.
    assert not request.body.get("stream")
    assert request.body["model"] == "fake-model"
    assert [t["function"]["name"] for t in request.body["tools"]] == ["final_result"]
    assert "plan: say hello" in json.dumps(request.body["messages"])
    # The key travels as the bearer token and nowhere else.
    assert request.authorization == f"Bearer {KEY}"
    others = {k: v for k, v in request.headers.items() if k != "authorization"}
    assert KEY not in json.dumps(others) + json.dumps(request.body) + request.path


def test_streamed_structured_output(fake: FakeOpenAI) -> None:
    async def run() -> tuple[Plan, Any]:
        async with agent_for(fake).run_stream("plan: stream it") as stream:
            return await stream.get_output(), stream.usage

    output, usage = asyncio.run(run())

    assert output == Plan(summary="write it", files=["PLAN.md"])
    assert (usage.input_tokens, usage.output_tokens) == (120, 30)
    [request] = fake.chat_requests
    assert request.body["stream"] is True


@pytest.mark.parametrize("status", [429, 500])
def test_transient_status_then_success_without_client_retries(
    fake: FakeOpenAI, status: int
) -> None:
    fake.fail_first(1, status)
    agent = agent_for(fake)

    with pytest.raises(ModelHTTPError) as failed:
        agent.run_sync("plan")
    assert failed.value.status_code == status
    assert agent.run_sync("plan").output.summary == "write it"
    assert fake.chat_count == 2


def test_default_client_retries_hide_a_429(fake: FakeOpenAI) -> None:
    """Why sisu sets max_retries=0: the openai client's default (2 retries) turns one model
    request into several HTTP requests that no step sees."""
    fake.fail_first(1, 429)
    client = AsyncOpenAI(base_url=fake.base_url, api_key=KEY)
    assert client.max_retries == 2
    model = OpenAIChatModel("fake-model", provider=OpenAIProvider(openai_client=client))

    result = Agent(model, output_type=Plan).run_sync("plan")

    assert result.usage.requests == 1
    assert fake.chat_count == 2


def test_model_settings_max_retries_zero_turns_client_retries_off(fake: FakeOpenAI) -> None:
    """The provider-independent switch (OpenAI, Anthropic, Groq SDKs): ModelSettings."""
    fake.fail_first(1, 429)
    model = OpenAIChatModel(
        "fake-model", provider=OpenAIProvider(base_url=fake.base_url, api_key=KEY)
    )
    agent = Agent(model, output_type=Plan, model_settings={"max_retries": 0})

    with pytest.raises(ModelHTTPError):
        agent.run_sync("plan")
    assert fake.chat_count == 1


def test_wrong_key_is_401() -> None:
    with (
        FakeOpenAI(respond=plan_answer, api_key="sk-other") as fake,
        pytest.raises(ModelHTTPError) as failed,
    ):
        agent_for(fake).run_sync("plan")
    assert failed.value.status_code == 401
    assert fake.chat_count == 1


def test_stalled_request_waits_for_release(fake: FakeOpenAI) -> None:
    arrived, release = fake.stall(1)
    results: list[Plan] = []
    runner = threading.Thread(target=lambda: results.append(agent_for(fake).run_sync("p").output))
    runner.start()

    assert arrived.wait(timeout=30)
    assert fake.chat_count == 1 and results == []
    release.set()
    runner.join(timeout=30)

    assert results == [Plan(summary="write it", files=["PLAN.md"])]
    assert fake.chat_count == 1


def test_model_list(fake: FakeOpenAI) -> None:
    async def models() -> list[str]:
        client = AsyncOpenAI(base_url=fake.base_url, api_key=KEY, max_retries=0)
        return [m.id async for m in client.models.list()]

    assert asyncio.run(models()) == ["fake-model"]
    assert fake.requests[-1].authorization == f"Bearer {KEY}"
