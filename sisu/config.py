"""Settings from flags, the environment (`SISU_*` plus the seed's `PORT`, `ADMIN_PORT`,
`DBOS__APPVERSION`) and defaults, in that order of precedence."""

from __future__ import annotations

from pathlib import Path

import platformdirs
from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from sisu import names

DEFAULT_APP_VERSION = "v1"


def default_home() -> Path:
    return Path(platformdirs.user_data_dir("sisu", appauthor=False))


class Settings(BaseSettings):
    """Everything sisu reads from its environment. Flags override these per command."""

    model_config = SettingsConfigDict(env_prefix="SISU_", extra="ignore", populate_by_name=True)

    home: Path = Field(default_factory=default_home, description="SISU_HOME: state directory")
    database_url: str | None = Field(
        default=None, description="SISU_DATABASE_URL: an external PostgreSQL; unset = embedded"
    )
    app_version: str = Field(
        default=DEFAULT_APP_VERSION,
        validation_alias=AliasChoices("SISU_APP_VERSION", "DBOS__APPVERSION"),
    )
    api_token: str | None = Field(
        default=None, description="SISU_API_TOKEN: bearer token the api-shim requires"
    )
    # The largest request body the api-shim reads; a bigger one is refused with 413 before it is
    # read whole (SISU_MAX_BODY_BYTES).
    max_body_bytes: int = Field(default=1024 * 1024, ge=1)
    port: int = Field(default=3001, validation_alias=AliasChoices("SISU_PORT", "PORT"))
    admin_port: int = Field(
        default=3002, validation_alias=AliasChoices("SISU_ADMIN_PORT", "ADMIN_PORT")
    )
    # Attempts per step before a run needs repair, and the first retry's delay (doubling).
    step_max_attempts: int = Field(default=names.DEFAULT_STEP_MAX_ATTEMPTS, ge=1, le=20)
    step_backoff_seconds: float = Field(default=names.DEFAULT_STEP_BACKOFF_SECONDS, ge=0, le=600)
    # Steps a worker runs at once; each holds a database connection, so the worker's pools are
    # sized from it. Runs beyond it wait their turn; a run waiting for a human holds none.
    step_slots: int = Field(default=16, ge=1, le=256)
    # Fail-closed caps on a run's declared workload (queue policy).
    cap_concurrency: int = Field(default=16, ge=1)
    cap_steps: int = Field(default=64, ge=1)
    cap_sandbox_minutes: int = Field(default=60, ge=1)
    # Fail-closed caps on a run's model budget (constraints.maxModelRequests, .maxTokens).
    cap_model_requests: int = Field(default=50, ge=1)
    cap_tokens: int = Field(default=500_000, ge=1)
    # Most intent runs executing at once across all workers (None: no global cap), and per
    # partition key on the partitioned queue.
    global_concurrency: int | None = Field(default=None, ge=1)
    partition_concurrency: int = Field(default=4, ge=1)
    # Which compiler plans intents on a worker: builtin (offline, deterministic) or llm (a
    # pydantic-ai model: SISU_LLM_MODEL as provider:name, SISU_LLM_BASE_URL for any
    # OpenAI-compatible server, SISU_LLM_API_KEY, else the provider's own variable).
    compiler: str = "builtin"
    llm_model: str | None = None
    llm_base_url: str | None = None
    llm_api_key: SecretStr | None = None
    # The replay compiler's source: a run id, or a file from `sisu run calls ID --json`.
    replay_from: str | None = None
    # What ExecuteST does on a worker: mock (the mock outside system), sandbox (the plan's
    # testCommand in bubblewrap) or http (each task POSTed to SISU_WEBHOOK_URL).
    executor: str = "mock"
    sandbox_isolation: str = "bwrap"
    webhook_url: str | None = None
    webhook_token: SecretStr | None = None
    # How `sisu worker` and `sisu serve` write their log lines: text or json (validated by the
    # CLI, which names the allowed values).
    log_format: str = Field(default="text", description="SISU_LOG_FORMAT: text or json")
    # How long a worker heartbeat may be silent before the worker counts as dead.
    heartbeat_seconds: float = 2.0
    worker_dead_after_seconds: float = 10.0
    # How long the database gauges of a /metrics page are reused before they are read again
    # (SISU_METRICS_CACHE_SECONDS): scrapes never query the database more often than this.
    metrics_cache_seconds: float = Field(default=5.0, ge=0, le=3600)

    @property
    def embedded(self) -> bool:
        return not self.database_url

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def run_logs_dir(self) -> Path:
        """Where a worker writes each run's command output (`sisu run logs`)."""
        return run_logs_dir(self.home)


def run_logs_dir(home: Path) -> Path:
    return home / "logs" / "runs"


def load_settings() -> Settings:
    return Settings()
