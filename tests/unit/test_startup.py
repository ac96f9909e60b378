"""Start-up cost and layering: `sisu --help` and other light commands never import the engine,
the web stack or the database driver, and nothing below `sisu/cli` imports typer or rich."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import sisu
from tests.support.cli import SISU

# prometheus_client is for the pages a worker or the api-shim serves (sisu.metrics imports it
# on first use); opentelemetry for a worker that exports traces (sisu.tracing).
HEAVY = ("dbos", "fastapi", "uvicorn", "psycopg", "prometheus_client", "opentelemetry")
# What a command that needs no database must not load (psycopg is allowed where it connects).
ENGINE = ("dbos", "fastapi", "uvicorn")
CLI_ONLY = ("typer", "rich")
PACKAGE = Path(sisu.__file__).parent


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SISU_", "DBOS__"))}
    env.update(NO_COLOR="1", COLUMNS="200")
    return env


def imported(stderr: str) -> set[str]:
    """Top-level names of every module in `-X importtime` output."""
    names: set[str] = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            name = line.rsplit("|", 1)[1].strip()
            if name and name != "imported package":
                names.add(name.split(".")[0])
    return names


def test_importtime_parser_sees_imports() -> None:
    # Guards the tests below against passing because nothing was parsed.
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import json"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "json" in imported(proc.stderr)


def test_python_m_sisu_help_imports_no_heavy_module() -> None:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "sisu", "--help"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0
    names = imported(proc.stderr)
    assert "sisu" in names and "typer" in names
    assert names.isdisjoint(HEAVY), sorted(names & set(HEAVY))


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["--version"],
        ["db", "--help"],
        ["db", "status", "--help"],
        ["worker", "--help"],
        ["crashdemo", "--help"],
        ["policy", "--help"],
    ],
    ids=lambda a: " ".join(a),
)
def test_installed_sisu_light_commands_import_no_heavy_module(args: list[str]) -> None:
    proc = subprocess.run(
        [SISU, *args],
        capture_output=True,
        text=True,
        env={**_env(), "PYTHONPROFILEIMPORTTIME": "1"},
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0
    names = imported(proc.stderr)
    assert "sisu" in names
    assert names.isdisjoint(HEAVY), sorted(names & set(HEAVY))


def test_policy_check_imports_no_engine() -> None:
    proc = subprocess.run(
        [SISU, "policy", "check"],
        capture_output=True,
        text=True,
        env={**_env(), "PYTHONPROFILEIMPORTTIME": "1"},
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0
    names = imported(proc.stderr)
    assert names.isdisjoint(HEAVY), sorted(names & set(HEAVY))


def _top_level_imports(path: Path) -> set[tuple[int, str]]:
    found: set[tuple[int, str]] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update((node.lineno, a.name.split(".")[0]) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add((node.lineno, node.module.split(".")[0]))
    return found


def test_nothing_below_cli_imports_typer_or_rich() -> None:
    offenders = []
    checked = 0
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] == "cli":
            continue
        checked += 1
        for line, name in _top_level_imports(path):
            if name in CLI_ONLY:
                offenders.append(f"sisu/{rel}:{line}: {name}")
    assert checked > 10  # the walk saw the package
    assert offenders == []


def test_the_cli_itself_does_import_typer() -> None:
    # The same walk over sisu/cli finds typer: the check above is able to see one.
    names = {n for p in (PACKAGE / "cli").rglob("*.py") for _, n in _top_level_imports(p)}
    assert "typer" in names
