"""The private DBOS and typer APIs behind sisu.compat and sisu.cli._compat are still where those
modules reach: each test fails loudly (and names what moved) when an upgrade changes one."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
import typer

import sisu
from sisu import compat
from sisu.cli._compat import NoSuchOption, UsageProblem

PACKAGE = Path(sisu.__file__).parent
PRIVATE = re.compile(r"_recover_pending_workflows|dbos\._|typer\._click|\._instances\b")
COMPAT_MODULES = {"compat.py", "cli/_compat.py"}


def test_no_module_outside_the_compat_modules_reaches_a_private_api() -> None:
    # ruff's TID251 enforces it on imports; this also catches a private path in a string.
    found = [
        f"{path.relative_to(PACKAGE)}:{n}"
        for path in PACKAGE.rglob("*.py")
        if path.relative_to(PACKAGE).as_posix() not in COMPAT_MODULES
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if PRIVATE.search(line)
    ]
    assert found == []


def test_dbos_error_classes_are_the_public_ones_and_keep_their_shape() -> None:
    import dbos

    for name in (
        "DBOSAwaitedWorkflowCancelledError",
        "DBOSMaxStepRetriesExceeded",
        "DBOSQueueDeduplicatedError",
        "DBOSWorkflowCancelledError",
    ):
        cls = getattr(compat, name)
        assert issubclass(cls, BaseException), name
        assert getattr(dbos.error, name) is cls, f"dbos.error.{name} moved"
    # sisu's log filter compares the awaited workflow's id with the current one.
    assert compat.DBOSAwaitedWorkflowCancelledError("wf-1").workflow_id == "wf-1"


def test_recover_pending_workflows_takes_executor_ids() -> None:
    from dbos import DBOS

    recover = inspect.getattr_static(DBOS, "_recover_pending_workflows")
    assert isinstance(recover, classmethod), "DBOS._recover_pending_workflows moved"
    assert list(inspect.signature(DBOS._recover_pending_workflows).parameters) == ["executor_ids"]


def test_reenqueue_for_recovery_and_the_internal_queue_are_there() -> None:
    from dbos import DBOS
    from dbos._sys_db import SystemDatabase
    from dbos._utils import INTERNAL_QUEUE_NAME

    assert isinstance(INTERNAL_QUEUE_NAME, str) and INTERNAL_QUEUE_NAME
    assert isinstance(inspect.getattr_static(DBOS, "_sys_db"), property), "DBOS._sys_db moved"
    params = list(inspect.signature(SystemDatabase.reenqueue_for_recovery).parameters)
    assert params == ["self", "workflow_id", "executor_ids", "recovery_queue_name"]


def test_active_workflow_ids_reads_the_instance_before_launch() -> None:
    # An instance that never launches connects to nothing; its active set is empty.
    from dbos import DBOS

    DBOS(config={"name": "sisu-compat-test", "system_database_url": "postgresql://x@127.0.0.1:1/x"})
    try:
        assert compat.active_workflow_ids() == set()
    finally:
        DBOS.destroy(destroy_registry=False)


def test_usage_problem_is_what_typer_raises_for_a_bad_option() -> None:
    app = typer.Typer()

    @app.command()
    def only() -> None:
        pass

    with pytest.raises(UsageProblem) as caught:
        app(["--no-such-option"], standalone_mode=False)
    assert caught.value.exit_code == 2
    assert callable(caught.value.show)  # sisu.cli.main calls it


def test_no_such_option_is_what_typer_raises_for_an_unknown_option_and_names_it() -> None:
    """sisu.cli.main takes `-v` after the command by this exception's `option_name`."""
    app = typer.Typer()

    @app.command()
    def only() -> None:
        pass

    with pytest.raises(NoSuchOption) as caught:
        app(["-v"], standalone_mode=False)
    assert isinstance(caught.value, UsageProblem)
    assert caught.value.option_name == "-v"


def test_typer_still_joins_help_paragraphs_through_the_hook_sisu_replaces(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """sisu.cli._compat.reflow_help_paragraphs replaces typer.rich_utils._fix_linebreaks: the
    help of `sisu top` (a docstring hard-wrapped over several lines) prints its second paragraph
    as one run of text, list items kept on their own lines."""
    from typer import rich_utils
    from typer.testing import CliRunner

    from sisu.cli import _compat, app

    assert callable(rich_utils._fix_linebreaks)
    assert _compat._reflow("a\nb\n- c\n- d\ne") == "a b\n- c\n- d e"
    monkeypatch.setattr(rich_utils, "_fix_linebreaks", rich_utils._fix_linebreaks)  # restored
    monkeypatch.setattr(rich_utils, "MAX_WIDTH", 400)  # no terminal wrapping in the way
    _compat.reflow_help_paragraphs()
    out = CliRunner().invoke(app, ["top", "--help"]).output
    assert "the last 1/5/15 minutes (with a sparkline per minute)" in out
