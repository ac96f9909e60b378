"""Settings precedence: `SISU_*` over the seed names (`DBOS__APPVERSION`, `PORT`,
`ADMIN_PORT`) over defaults."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sisu.config import DEFAULT_APP_VERSION, Settings, load_settings

SEED_NAMES = ("PORT", "ADMIN_PORT")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.upper().startswith(("SISU_", "DBOS__")) or key.upper() in SEED_NAMES:
            monkeypatch.delenv(key)


def test_defaults() -> None:
    s = load_settings()
    assert s.app_version == DEFAULT_APP_VERSION == "v1"
    assert s.port == 3001
    assert s.admin_port == 3002
    assert s.database_url is None
    assert s.embedded is True


def test_dbos_appversion_over_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBOS__APPVERSION", "v7")
    assert Settings().app_version == "v7"


def test_sisu_app_version_over_dbos_appversion(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBOS__APPVERSION", "v7")
    monkeypatch.setenv("SISU_APP_VERSION", "v9")
    assert Settings().app_version == "v9"


def test_sisu_app_version_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SISU_APP_VERSION", "v9")
    assert Settings().app_version == "v9"


def test_port_and_admin_port_are_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "4100")
    monkeypatch.setenv("ADMIN_PORT", "4200")
    s = Settings()
    assert (s.port, s.admin_port) == (4100, 4200)


def test_sisu_ports_over_the_seed_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "4100")
    monkeypatch.setenv("ADMIN_PORT", "4200")
    monkeypatch.setenv("SISU_PORT", "5100")
    monkeypatch.setenv("SISU_ADMIN_PORT", "5200")
    s = Settings()
    assert (s.port, s.admin_port) == (5100, 5200)


def test_a_bad_port_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    monkeypatch.setenv("PORT", "not-a-port")
    with pytest.raises(ValidationError):
        Settings()


def test_database_url_selects_external_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SISU_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/x")
    s = Settings()
    assert s.database_url == "postgresql://postgres@127.0.0.1:5432/x"
    assert s.embedded is False


def test_an_empty_database_url_means_embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SISU_DATABASE_URL", "")
    assert Settings().embedded is True


def test_home_and_logs_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SISU_HOME", str(tmp_path / "h"))
    s = Settings()
    assert s.home == tmp_path / "h"
    assert s.logs_dir == tmp_path / "h" / "logs"


def test_explicit_values_beat_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # What a command does with a flag: the value it passes wins over the environment.
    monkeypatch.setenv("SISU_APP_VERSION", "v9")
    monkeypatch.setenv("PORT", "4100")
    s = Settings(app_version="flag", port=1234)
    assert (s.app_version, s.port) == ("flag", 1234)
