"""The worker's filter on DBOS's logger: a cancellation is not logged as an error with a
traceback, and every other record passes untouched."""

from __future__ import annotations

import logging
import sys

import pytest

from sisu import engine


def record(exc: BaseException | None, level: int = logging.ERROR) -> logging.LogRecord:
    exc_info = None
    if exc is not None:
        try:
            raise exc
        except BaseException:
            exc_info = sys.exc_info()
    return logging.LogRecord(
        "dbos", level, "_core.py", 1203, "Exception encountered in background workflow:", None,
        exc_info,
    )  # fmt: skip


@pytest.fixture
def keep() -> engine._CancellationLogFilter:
    return engine._CancellationLogFilter()


def test_other_errors_keep_their_level_and_traceback(keep: engine._CancellationLogFilter) -> None:
    for exc in (None, ValueError("boom")):
        r = record(exc)
        assert keep.filter(r) is True
        assert r.levelno == logging.ERROR
        assert (r.exc_info is None) == (exc is None)


def test_a_cancellation_is_one_warning_line_without_traceback(
    keep: engine._CancellationLogFilter,
) -> None:
    from sisu.compat import DBOSAwaitedWorkflowCancelledError, DBOSWorkflowCancelledError

    # Outside any workflow (so not this workflow's own id): kept, as one warning line.
    for exc in (DBOSAwaitedWorkflowCancelledError("wf-1"), DBOSWorkflowCancelledError("gone")):
        r = record(exc)
        assert keep.filter(r) is True
        assert (r.levelno, r.exc_info, r.exc_text) == (logging.WARNING, None, None)
        assert "\n" not in r.getMessage()


def test_calm_cancellation_logs_installs_the_filter_once() -> None:
    logger = logging.getLogger("dbos")
    before = list(logger.filters)
    try:
        engine.calm_cancellation_logs()
        engine.calm_cancellation_logs()
        added = [f for f in logger.filters if f not in before]
        assert [type(f) for f in added] == [engine._CancellationLogFilter]
    finally:
        logger.filters = before


def test_an_expected_run_outcome_is_dropped_unless_verbose() -> None:
    """finish_run has logged the one line for it; DBOS's record would add the traceback."""
    from sisu.workflow.steps.errors import CommandFailed, RetriesExhausted, StepError

    quiet, loud = engine._OutcomeLogFilter(), engine._OutcomeLogFilter(verbose=True)
    for exc in (RetriesExhausted("ExecuteST: x"), CommandFailed("exit 1"), StepError("bad")):
        assert quiet.filter(record(exc)) is False
        r = record(exc)
        assert loud.filter(r) is True
        assert r.exc_info is not None
    for other in (None, ValueError("a bug")):
        assert quiet.filter(record(other)) is True


def test_calm_outcome_logs_keeps_one_filter() -> None:
    logger = logging.getLogger("dbos")
    before = list(logger.filters)
    try:
        engine.calm_outcome_logs()
        engine.calm_outcome_logs(verbose=True)
        added = [f for f in logger.filters if f not in before]
        assert [type(f) for f in added] == [engine._OutcomeLogFilter]
        assert [getattr(f, "verbose") for f in added] == [True]  # noqa: B009
    finally:
        logger.filters = before
