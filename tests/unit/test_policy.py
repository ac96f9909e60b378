"""`sisu policy check`: workflow purity (Law 4) and shim isolation (Law 3), judged on fixture
files that break each rule on known lines, on clean files, and on the real package."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

import sisu
from sisu.audit import policy
from tests.support.cli import run_sisu

FIXTURE_ROOT = Path(__file__).parent / "fixtures" / "policy" / "pkg"
WF = "pkg/workflow/wf"
API = "pkg/api"
IMPORT = "wf-impure-import"
CALL = "wf-impure-call"
API_RULE = "api-imports-workflow"

# (file, line, rule) for every violation the fixture package holds, and nothing else.
EXPECTED: set[tuple[str, int, str]] = {
    (f"{WF}/bad_time.py", 3, IMPORT),  # import time
    (f"{WF}/bad_time.py", 7, IMPORT),  # import datetime as dt, inside the function
    (f"{WF}/bad_random.py", 3, IMPORT),
    (f"{WF}/bad_uuid.py", 3, IMPORT),
    (f"{WF}/bad_environ.py", 3, IMPORT),  # import os (then os.environ)
    (f"{WF}/bad_open.py", 5, CALL),  # open() with no import at all
    (f"{WF}/bad_socket.py", 3, IMPORT),
    (f"{WF}/bad_subprocess.py", 3, IMPORT),
    (f"{WF}/bad_urllib.py", 3, IMPORT),  # import urllib.request
    (f"{WF}/bad_psycopg.py", 3, IMPORT),
    (f"{WF}/bad_relative_db.py", 3, IMPORT),  # from ... import db
    (f"{WF}/bad_relative_db.py", 7, IMPORT),  # from ...db import connection
    (f"{WF}/bad_from_import.py", 3, IMPORT),  # from time import monotonic, sleep
    (f"{API}/bad.py", 5, API_RULE),  # import sisu.workflow.registry
    (f"{API}/bad.py", 6, API_RULE),  # from sisu.workflow.wf import crashdemo
    (f"{API}/bad.py", 8, API_RULE),  # from ..workflow import registry
    (f"{API}/bad.py", 9, API_RULE),  # from .. import workflow
}
CLEAN_FILES = {f"{WF}/clean.py", f"{WF}/__init__.py", f"{API}/clean.py"}
LINE = re.compile(r"^(?P<file>[^:\s]+):(?P<line>\d+): (?P<rule>[a-z-]+)(?::|$)")


def triples(violations: list[policy.Violation]) -> list[tuple[str, int, str]]:
    return [(v.file, v.line, v.rule) for v in violations]


@pytest.fixture(scope="module")
def found() -> list[policy.Violation]:
    return policy.check(FIXTURE_ROOT)


@pytest.fixture
def cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SISU_", "DBOS__"))}
    env.update(NO_COLOR="1", COLUMNS="200")
    return env


def test_fixture_violations_are_exactly_the_expected_triples(
    found: list[policy.Violation],
) -> None:
    assert set(triples(found)) == EXPECTED


@pytest.mark.parametrize(
    ("name", "line", "rule"),
    sorted((Path(f).name, line, rule) for f, line, rule in EXPECTED if f.startswith(WF)),
)
def test_each_bad_workflow_file_is_caught(
    found: list[policy.Violation], name: str, line: int, rule: str
) -> None:
    assert (f"{WF}/{name}", line, rule) in triples(found)


def test_clean_files_and_steps_produce_no_violation(found: list[policy.Violation]) -> None:
    files = {v.file for v in found}
    assert not files & CLEAN_FILES
    # Steps may do I/O: workflow/steps/ is outside the purity rule.
    assert not any(f.startswith("pkg/workflow/steps/") for f in files)


def test_every_bad_file_in_the_fixture_is_reported(found: list[policy.Violation]) -> None:
    bad = {str(p.relative_to(FIXTURE_ROOT.parent)) for p in FIXTURE_ROOT.rglob("bad*.py")}
    assert bad == {v.file for v in found}


def test_violations_carry_a_detail_naming_the_module_or_call(
    found: list[policy.Violation],
) -> None:
    by_key = {(v.file, v.line): v.detail for v in found}
    assert by_key[(f"{WF}/bad_urllib.py", 3)].startswith("urllib.request")
    assert by_key[(f"{WF}/bad_relative_db.py", 3)].startswith("sisu.db")
    assert by_key[(f"{WF}/bad_open.py", 5)].startswith("open()")


def test_one_finding_per_file_line_and_rule(found: list[policy.Violation]) -> None:
    listed = triples(found)
    assert len(listed) == len(set(listed))


def test_the_real_sisu_package_passes() -> None:
    assert policy.check(Path(sisu.__file__).parent) == []


def test_check_on_a_missing_subtree_is_empty(tmp_path: Path) -> None:
    (tmp_path / "workflow" / "wf").mkdir(parents=True)
    assert policy.check(tmp_path) == []


def test_a_syntax_error_is_a_violation_not_a_crash(tmp_path: Path) -> None:
    wf = tmp_path / "pkg" / "workflow" / "wf"
    wf.mkdir(parents=True)
    (wf / "broken.py").write_text("def wf(:\n    pass\n")
    assert triples(policy.check(tmp_path / "pkg")) == [
        ("pkg/workflow/wf/broken.py", 1, "syntax-error")
    ]


def test_cli_exits_1_and_prints_one_line_per_violation(cli_env: dict[str, str]) -> None:
    result = run_sisu(["policy", "check", str(FIXTURE_ROOT)], cli_env)
    assert result.exit_code == 1
    lines = [ln for ln in result.stdout.splitlines() if ln.strip()]
    parsed = [LINE.match(ln) for ln in lines]
    assert all(parsed), lines
    printed = {(m["file"], int(m["line"]), m["rule"]) for m in parsed if m}
    assert printed == EXPECTED
    assert len(lines) == len(policy.check(FIXTURE_ROOT))


def test_cli_json_reports_ok_false_with_the_violations(cli_env: dict[str, str]) -> None:
    result = run_sisu(["policy", "check", str(FIXTURE_ROOT), "--json"], cli_env)
    assert result.exit_code == 1
    body = result.json()
    assert body["ok"] is False
    assert {(v["file"], v["line"], v["rule"]) for v in body["violations"]} == EXPECTED


def test_cli_on_the_installed_package_exits_0(cli_env: dict[str, str]) -> None:
    result = run_sisu(["policy", "check", "--json"], cli_env)
    assert result.exit_code == 0, result.stderr
    assert result.json() == {"ok": True, "violations": []}
