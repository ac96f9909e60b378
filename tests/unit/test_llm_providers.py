"""The llm compiler's providers: how SISU_LLM_MODEL, SISU_LLM_BASE_URL and SISU_LLM_API_KEY (or
the provider's own key variable) become a pydantic-ai model. Building a model sends nothing;
no test here reaches any network."""

from __future__ import annotations

from typing import Any

import pytest

from sisu.errors import ValidationFailed
from sisu.workflow.steps.llm_compiler import PROVIDERS, config_from, provider_model

LOCAL = "http://127.0.0.1:9/v1"


@pytest.fixture(autouse=True)
def no_google_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    # Vertex without a key would look for Google's default credentials, which may probe the
    # GCE metadata server: forbid the probe, and hide any credentials of this machine.
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    for var in ("GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_API_KEY", "GEMINI_API_KEY"):
        monkeypatch.delenv(var, raising=False)


def client_key(model: Any) -> str | None:
    client = model.client
    api = getattr(client, "_api_client", None)  # google-genai keeps it one level down
    return api.api_key if api is not None else client.api_key  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("model", "model_class", "system"),
    [
        ("openai:gpt-4.1-mini", "OpenAIChatModel", "openai"),
        ("anthropic:claude-sonnet-4-5", "AnthropicModel", "anthropic"),
        ("google-gla:gemini-2.5-flash", "GoogleModel", "google"),
        ("google:gemini-2.5-flash", "GoogleModel", "google"),
        ("google-vertex:gemini-2.5-flash", "GoogleModel", "google-cloud"),
        ("google-cloud:gemini-2.5-flash", "GoogleModel", "google-cloud"),
    ],
)
def test_each_provider_gets_the_key_the_base_url_and_the_model_name(
    model: str, model_class: str, system: str
) -> None:
    cfg = config_from(model, LOCAL, "sk-sisu", environ={})
    built = provider_model(cfg)
    assert (type(built).__name__, built.system) == (model_class, system)
    assert built.model_name == model.partition(":")[2]
    assert (built.base_url or "").rstrip("/") == LOCAL
    assert client_key(built) == "sk-sisu"
    assert (cfg.model, cfg.key_var) == (model, "SISU_LLM_API_KEY")
    assert "sk-sisu" not in repr(cfg)


@pytest.mark.parametrize(
    ("model", "environ", "key_var"),
    [
        ("openai:gpt-4.1-mini", {"OPENAI_API_KEY": "own"}, "OPENAI_API_KEY"),
        ("anthropic:claude-sonnet-4-5", {"ANTHROPIC_API_KEY": "own"}, "ANTHROPIC_API_KEY"),
        ("google-gla:gemini-2.5-flash", {"GEMINI_API_KEY": "own"}, "GEMINI_API_KEY"),
        (
            "google-gla:gemini-2.5-flash",
            {"GOOGLE_API_KEY": "own", "GEMINI_API_KEY": "older"},
            "GOOGLE_API_KEY",
        ),
    ],
)
def test_without_sisu_llm_api_key_the_providers_own_variable_is_used(
    model: str, environ: dict[str, str], key_var: str
) -> None:
    cfg = config_from(model, None, None, environ=environ)
    assert (cfg.api_key, cfg.key_var) == ("own", key_var)
    assert client_key(provider_model(cfg)) == "own"
    # SISU_LLM_API_KEY wins over the provider's own variable.
    assert config_from(model, None, "sisu", environ=environ).api_key == "sisu"


@pytest.mark.parametrize(
    "model", ["openai:gpt-4.1-mini", "anthropic:claude-sonnet-4-5", "google-gla:gemini-2.5-flash"]
)
def test_a_provider_without_any_key_is_refused_naming_the_variables(model: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        config_from(model, None, None, environ={})
    assert caught.value.details[0]["field"] == "SISU_LLM_API_KEY"
    own = caught.value.details[0]["alternatives"]
    assert own == list(PROVIDERS[model.partition(":")[0]].key_vars)
    assert all(var in caught.value.message for var in ["SISU_LLM_API_KEY", *own])


def test_a_local_openai_compatible_server_and_vertex_need_no_key() -> None:
    local = config_from("openai:llama3.1", LOCAL, None, environ={})
    assert local.api_key is None
    assert client_key(provider_model(local)) == "none"  # the client insists on one
    # Vertex authenticates with Google's credentials, found when the worker builds the model.
    vertex = config_from("google-vertex:gemini-2.5-flash", None, None, environ={})
    assert (vertex.kind, vertex.api_key) == ("google-cloud", None)


@pytest.mark.parametrize("model", ["nosuch:model", "openai:", "mistral:large", "gpt-4.1"])
def test_an_unknown_provider_or_a_missing_name_is_refused_naming_sisu_llm_model(
    model: str,
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        config_from(model, None, "k", environ={})
    assert caught.value.details[0]["field"] == "SISU_LLM_MODEL"
    assert caught.value.exit_code == 2
