"""sisu.names is the one spelling of every name two sides must agree on: the Python sides take
it from there, and the SQL in `sql/` (which cannot import it) is read here and checked against
it. A copy that drifts fails here, not in a run that never finds its workflow."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest

import sisu
from sisu import names
from sisu.audit import policy
from sisu.db.queries import q
from sisu.db.resources import sql_dir

PACKAGE = Path(sisu.__file__).parent
NAMES_FILE = PACKAGE / "names.py"


def _quoted(text: str) -> list[str]:
    return re.findall(r"'([^']*)'", text)


def _sql_lists(text: str) -> list[list[str]]:
    """Every literal list in SQL text: `ARRAY['a', 'b']` and `IN ('a', 'b')`."""
    found = re.findall(r"(?:ARRAY\[|IN \()((?:'[^']*'(?:,\s*)?)+)[\])]", text)
    return [_quoted(f) for f in found]


def test_names_imports_nothing() -> None:
    # Light enough for `sisu --help`, the api-shim and the pure workflows alike.
    tree = ast.parse(NAMES_FILE.read_text())
    imports = [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]
    assert [ast.unparse(n) for n in imports] == ["from __future__ import annotations"]


def test_the_pure_workflows_may_import_names() -> None:
    wf = PACKAGE / "workflow" / "wf"
    importers = [p.name for p in wf.glob("*.py") if "from sisu import names" in p.read_text()]
    assert sorted(importers) == ["bench.py", "crashdemo.py", "intent.py"]
    assert policy.check(PACKAGE) == []


def test_workflow_names_agree_with_the_registered_workflows() -> None:
    from sisu.drills import bench, crashdemo
    from sisu.service import intents
    from sisu.workflow import registry

    assert set(registry.WORKFLOWS) == {
        names.RUN_INTENT_WF,
        names.CRASH_DEMO_WF,
        names.BENCH_BASELINE_WF,
        names.BENCH_TX_BASELINE_WF,
    }
    assert intents.RUN_WORKFLOW == names.RUN_INTENT_WF
    assert crashdemo.WORKFLOW_NAME == names.CRASH_DEMO_WF
    assert bench.BASELINE_WORKFLOW == names.BENCH_BASELINE_WF
    assert bench.TX_BASELINE_WORKFLOW == names.BENCH_TX_BASELINE_WF


def test_the_input_topic_is_one_on_both_sides_and_in_sql() -> None:
    from sisu.service import human
    from sisu.workflow.wf import intent

    assert human.INPUT_TOPIC == intent.INPUT_TOPIC == names.INPUT_TOPIC
    assert f"n.topic = '{names.INPUT_TOPIC}'" in q("audit_unread_events")


def _literals() -> list[tuple[str, int, Any]]:
    """Every string, and every tuple/list/set of strings, written in sisu/ outside names.py."""
    out: list[tuple[str, int, Any]] = []
    for path in PACKAGE.rglob("*.py"):
        if path == NAMES_FILE:
            continue
        shown = path.relative_to(PACKAGE).as_posix()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                out.append((shown, node.lineno, node.value))
            elif isinstance(node, ast.Tuple | ast.List | ast.Set) and node.elts:
                values = tuple(e.value if isinstance(e, ast.Constant) else None for e in node.elts)
                if all(isinstance(v, str) for v in values):
                    out.append((shown, node.lineno, values))
    return out


def test_no_module_spells_a_workflow_name_or_the_topic_itself() -> None:
    shared = {
        names.RUN_INTENT_WF,
        names.CRASH_DEMO_WF,
        names.BENCH_BASELINE_WF,
        names.BENCH_TX_BASELINE_WF,
        names.INPUT_TOPIC,
    }
    literals = _literals()
    assert any(v == "insert_mark" for _, _, v in literals)  # the walk sees literals at all
    assert [(f, n, v) for f, n, v in literals if v in shared] == []


def test_no_module_keeps_its_own_list_of_steps_or_finished_statuses() -> None:
    copies = [
        (f, n, v)
        for f, n, v in _literals()
        if isinstance(v, tuple)
        and len(v) > 1
        and (set(v) <= set(names.STEP_IDS) or set(v) <= names.TERMINAL_STATUSES)
    ]
    assert copies == []


def test_every_step_list_in_sql_is_the_four_steps_in_order() -> None:
    text = (sql_dir() / "queries.sql").read_text()
    lists = [lst for lst in _sql_lists(text) if names.COMPILE_ST in lst]
    assert len(lists) >= 4  # run_steps, run_artifacts, retry_start_step, audit_step_sequence
    assert all(lst == list(names.STEP_IDS) for lst in lists), lists


def test_every_step_id_sql_names_is_one_of_the_four() -> None:
    texts = [(sql_dir() / "queries.sql").read_text()]
    texts += [p.read_text() for p in sorted(Path(str(sql_dir() / "migrations")).glob("*.sql"))]
    spelled = {s for t in texts for s in _quoted(t) if re.fullmatch(r"[A-Z]\w*ST", s)}
    assert spelled
    assert spelled <= set(names.STEP_IDS)


def test_status_sets_agree_with_each_other_the_contract_and_the_schema() -> None:
    from sisu.contracts.runs import RUN_STATUSES

    assert RUN_STATUSES == names.RUN_STATUSES
    assert set(names.RUN_STATUSES) >= names.TERMINAL_STATUSES
    assert set(names.RETRYABLE_STATUSES) <= names.TERMINAL_STATUSES
    # gc takes every finished run except one waiting for repair.
    assert set(names.GC_STATUSES) == names.TERMINAL_STATUSES - {"retries_exceeded"}
    schema = (sql_dir() / "migrations" / "0001_app_schema.sql").read_text()
    check = re.search(r"status\s+text NOT NULL CHECK \(status IN \(([^)]*)\)\)", schema)
    assert check is not None
    assert tuple(_quoted(check.group(1))) == names.RUN_STATUSES


@pytest.mark.parametrize(
    ("query", "statuses"),
    [
        ("audit_unread_events", names.TERMINAL_STATUSES),
        ("gc_lock_finished_runs", names.DBOS_TERMINAL_STATUSES),
    ],
)
def test_finished_status_lists_in_sql_agree(query: str, statuses: frozenset[str]) -> None:
    lists = [set(lst) for lst in _sql_lists(q(query)) if set(lst) & statuses]
    assert lists == [statuses]


def test_dbos_terminal_statuses_are_dbos_statuses_that_never_run_again() -> None:
    from dbos import WorkflowStatusString

    active = {"PENDING", "ENQUEUED", "DELAYED"}
    assert {s.value for s in WorkflowStatusString} - active == names.DBOS_TERMINAL_STATUSES


def test_retry_defaults_agree_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    from sisu.config import Settings
    from sisu.service.backend import Backend
    from sisu.worker.process import WorkerOptions
    from sisu.workflow.steps.errors import RetriesExhausted, TransientStepError
    from sisu.workflow.wf import intent

    fields = Settings.model_fields
    assert fields["step_max_attempts"].default == names.DEFAULT_STEP_MAX_ATTEMPTS
    assert fields["step_backoff_seconds"].default == names.DEFAULT_STEP_BACKOFF_SECONDS
    assert Backend("postgresql://x@127.0.0.1:1/x", app_version="v").run_policy == {
        "maxAttempts": names.DEFAULT_STEP_MAX_ATTEMPTS,
        "backoffSeconds": names.DEFAULT_STEP_BACKOFF_SECONDS,
    }
    worker = {
        f: WorkerOptions.__dataclass_fields__[f].default
        for f in ("step_max_attempts", "step_backoff_seconds")
    }
    assert worker == {
        "step_max_attempts": names.DEFAULT_STEP_MAX_ATTEMPTS,
        "step_backoff_seconds": names.DEFAULT_STEP_BACKOFF_SECONDS,
    }
    # A workflow started without a policy retries as the defaults say.
    slept: list[float] = []
    from dbos import DBOS

    monkeypatch.setattr(DBOS, "sleep", slept.append)
    calls: list[int] = []

    def flaky() -> dict[str, Any]:
        calls.append(1)
        raise TransientStepError("down")

    with pytest.raises(RetriesExhausted):
        intent._with_retries(names.COMPILE_ST, {}, flaky)
    assert len(calls) == names.DEFAULT_STEP_MAX_ATTEMPTS
    base = names.DEFAULT_STEP_BACKOFF_SECONDS
    assert slept == [base * 2**i for i in range(names.DEFAULT_STEP_MAX_ATTEMPTS - 1)]
