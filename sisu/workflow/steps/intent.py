"""The four stable steps of RunIntentWF. Each runs as one datasource transaction that writes its
`app.run_steps` attempt row, moves `app.runs` forward and commits with the step's checkpoint."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from dbos import DBOS
from psycopg.types.json import Jsonb

from sisu import metrics, tracing
from sisu.db import faults
from sisu.db.queries import q
from sisu.workflow.steps import datasource, drill_hooks, records, runtime
from sisu.workflow.steps.compiler import approval_gate
from sisu.workflow.steps.errors import StepError, TransientStepError
from sisu.workflow.steps.ports import OutsideExecutor, Work
from sisu.workspace import build

Conn = datasource.Cursor
log = logging.getLogger("sisu.steps")
# How runs end, one line each: what an operator greps a worker's log for.
outcome = logging.getLogger("sisu.run")


def _record_failed_attempt(run_id: str, step_id: str, started_at: datetime, error: Any) -> bool:
    """Record a failed attempt as the datasource step RecordFailureST: its row commits with the
    step's checkpoint, so a workflow recovered after a kill replays the record (as it replays
    the failure) instead of writing the attempt again. True if this call wrote it. Best effort:
    the database may be what failed; the step's error reaches the workflow either way."""
    ran = False  # in this call: a replay returns the recorded checkpoint instead

    def transaction() -> None:
        nonlocal ran
        ran = True
        _insert_failed_attempt(datasource.connection(), run_id, step_id, started_at, error)

    try:
        datasource.run(RECORD_FAILURE_ST, transaction)
    except Exception as exc:
        log.warning("could not record the failed attempt of %s/%s: %s", run_id, step_id, exc)
        return False
    return ran


# The step that records a failed attempt (a datasource step since it is exactly-once; the name
# is the one the outside executors' failure record always had, so runs in flight replay it).
RECORD_FAILURE_ST = "RecordFailureST"


def _insert_failed_attempt(
    conn: Conn, run_id: str, step_id: str, started_at: datetime, error: Any
) -> None:
    row = conn.execute(q("next_attempt"), {"run_id": run_id, "step_id": step_id}).fetchone()
    assert row is not None
    conn.execute(
        q("insert_step_attempt"),
        {
            "run_id": run_id,
            "step_id": step_id,
            "attempt": row["attempt"],
            "phase": "failed",
            "output": None,
            "error": Jsonb(error),
            "started_at": started_at,
        },
    )


def _run_step(
    run_id: str, step_id: str, body: Callable[[Conn], Any], *, status_after: str = "running"
) -> Any:
    """Run `body(conn)` as the datasource step `step_id`, then record its succeeded attempt and
    move the run, all in one transaction. A crash before the commit leaves no attempt row, so
    the re-execution gets the same attempt number."""
    started_at = datetime.now(UTC)
    clock = time.monotonic()
    # Whether the transaction ran in this call (a replay returns the recorded outcome instead,
    # and counts nothing), and whether it moved the run (a canceled run stays canceled).
    ran = moved = False

    def transaction() -> Any:
        nonlocal ran, moved
        ran = True
        conn = datasource.connection()
        if tracing.enabled():
            _annotate_span(conn, run_id, step_id)
        # Pipeline mode: writes nobody reads back (the step's inserts, then its attempt row)
        # travel together with the next read or with the end of the block.
        with conn.connection.pipeline():
            output = body(conn)
            records.step_succeeded(conn, run_id, step_id, output, started_at, status_after)
        moved = conn.rowcount == 1
        return output

    try:
        output = datasource.run(step_id, transaction)
    except Exception as exc:
        error = _step_error(exc)
        _record_failed_attempt(run_id, step_id, started_at, error.as_error(step_id))
        if ran:
            metrics.step_attempt(step_id, metrics.outcome_of(error.code), time.monotonic() - clock)
        if error is exc:
            raise
        raise error from exc
    # Counted after the commit: a run is ended once its transaction is.
    if ran:
        metrics.step_attempt(step_id, "succeeded", time.monotonic() - clock)
        if moved and status_after in metrics.ENDED_STATUSES:
            metrics.run_ended(status_after)
    return output


def _annotate_span(conn: Conn, run_id: str, step_id: str) -> None:
    """The step's span names its run, step and attempt (the number this attempt's row gets,
    failed or succeeded) and the intent's traceId: a query that only a tracing worker pays."""
    row = conn.execute(q("step_trace"), {"run_id": run_id, "step_id": step_id}).fetchone()
    tracing.annotate(
        {
            tracing.RUN_ID: run_id,
            tracing.STEP: step_id,
            tracing.ATTEMPT: int(row["attempt"]) if row else None,
            tracing.TRACE_ID: row["trace_id"] if row else None,
        }
    )


def _step_error(exc: Exception) -> StepError:
    """What the workflow is told of a step's failure: the step's own error, or — lost
    connections, a restarting server, a full disk, serialization failures, a pool with no free
    connection in time (a burst) — a transient one worth another attempt; anything else fails
    the run with its type and message."""
    if isinstance(exc, StepError):
        return exc
    kind = TransientStepError if faults.is_transient(exc) else StepError
    return kind(f"{type(exc).__name__}: {exc}")


def is_transient_failure(exc: BaseException) -> bool:
    """For the workflow, which may not import database code: a failure that passes."""
    return faults.is_transient(exc)


def _intent(conn: Conn, run_id: str) -> dict[str, Any]:
    """The intent's row, for a run whose workflow was not started with it (one enqueued before
    the intent travelled with the workflow)."""
    row = conn.execute(q("get_intent"), {"id": run_id}).fetchone()
    if row is None:
        raise StepError(f"intent {run_id} not found")
    return dict(row)


def _compile_request(intent: dict[str, Any], run_id: str) -> dict[str, Any]:
    request = {
        "runId": run_id,
        "goal": intent["goal"],
        "inputs": intent["inputs"],
        "constraints": intent["constraints"],
        "connectors": intent["connectors"],
    }
    if intent["repo"] is not None:  # a model compiler reads the repository at this commit
        request["repo"] = intent["repo"]
        request["commit"] = intent["commit_sha"]
    return request


def _settled(plan: dict[str, Any], intent: dict[str, Any]) -> dict[str, Any]:
    """The compiler's plan plus what the intent fixes whatever the compiler says: the commit the
    workspace starts from, and the approval gate `constraints.requireApproval` asks for."""
    plan = dict(plan)
    if intent["repo"] is not None:
        plan["source"] = {"repo": intent["repo"], "commit": intent["commit_sha"]}
    constraints = intent["constraints"] or {}
    if constraints.get("requireApproval") is True and approval_node(plan) is None:
        nodes = list(plan["nodes"])
        plan["nodes"] = [*nodes[:1], approval_gate(constraints), *nodes[1:]]
    return plan


def plans_outside() -> bool:
    """Whether this worker's compiler plans in the workflow, before CompileST (a model
    compiler: no transaction may be open while a model thinks)."""
    return bool(getattr(runtime.get().compiler, "plans_outside", False))


def draft_plan(run_id: str, intent: dict[str, Any] | None = None) -> dict[str, Any]:
    """Plan with the worker's model compiler, in workflow code: each model request is a DBOS
    step of its own and records itself; a recorded request is replayed, never sent again."""
    request = (
        _compile_request(intent, run_id) if intent is not None else _load_compile_request(run_id)
    )
    rt = runtime.get()
    compiler: Any = rt.compiler
    constraints = request.get("constraints") or {}

    def budget() -> Any:
        from pydantic_ai.usage import UsageLimits

        return UsageLimits(
            request_limit=constraints.get("maxModelRequests") or rt.cap_model_requests,
            total_tokens_limit=constraints.get("maxTokens") or rt.cap_tokens,
        )

    try:
        return dict(compiler.draft(request, budget))
    except StepError as exc:
        _record_outside_failure(run_id, "CompileST", exc.as_error("CompileST"))
        raise


@DBOS.step(name="LoadIntentST")
def _load_compile_request(run_id: str) -> dict[str, Any]:
    with datasource.outside_transaction() as conn:
        return _compile_request(_intent(conn, run_id), run_id)


def compile_st(
    run_id: str, draft: dict[str, Any] | None = None, given: dict[str, Any] | None = None
) -> dict[str, Any]:
    """CompileST: the intent (`given` with the workflow, or read) becomes a plan through the
    compiler port; the call is recorded. A plan drafted outside (a model compiler, whose
    requests recorded themselves) is committed as it is."""

    def body(conn: Conn) -> dict[str, Any]:
        intent = given if given is not None else _intent(conn, run_id)
        if draft is not None:
            return _settled(draft, intent)
        request = _compile_request(intent, run_id)
        plan = records.compile_plan(conn, run_id, request, runtime.get().compiler)
        return _settled(plan, intent)

    return dict(_run_step(run_id, "CompileST", body))


def _rebuild(run_id: str, plan: dict[str, Any]) -> build.Built:
    """The run's workspace from scratch: the pinned commit (or nothing) plus the plan's files."""
    source = plan.get("source") or {}
    try:
        return build.rebuild(
            runtime.get().workspaces / run_id,
            plan["patch"]["files"],
            repo=source.get("repo"),
            commit=source.get("commit"),
        )
    except build.WorkspaceError as exc:
        raise StepError(str(exc)) from exc


def apply_patch_st(run_id: str, plan: dict[str, Any]) -> dict[str, Any]:
    """ApplyPatchST: build the run's workspace — a checkout of the intent's commit, or an empty
    folder — and write the plan's files into it; each file, and the diff against the commit
    (`sisu run patch`), is an artifact. Building happens before the transaction (a checkout is a
    command, and no connection waits on it) and from scratch, so a re-execution after a crash
    builds the same tree."""
    started_at = datetime.now(UTC)
    clock = time.monotonic()
    try:
        built = _rebuild(run_id, plan)
    except Exception as exc:
        error = _step_error(exc)
        _record_failed_attempt(run_id, "ApplyPatchST", started_at, error.as_error("ApplyPatchST"))
        seconds = time.monotonic() - clock
        metrics.step_attempt("ApplyPatchST", metrics.outcome_of(error.code), seconds)
        if error is exc:
            raise
        raise error from exc

    def body(conn: Conn) -> dict[str, Any]:
        return records.workspace_artifacts(conn, run_id, built, plan.get("source"))

    return dict(_run_step(run_id, "ApplyPatchST", body))


def approval_node(plan: dict[str, Any]) -> dict[str, Any] | None:
    return next((n for n in plan["nodes"] if n["kind"] == "approval"), None)


def await_input_st(
    run_id: str, node: dict[str, Any], plan: dict[str, Any], applied: dict[str, Any]
) -> dict[str, Any]:
    """Put the run in `waiting_input` with a question card artifact; the workflow then waits
    durably for the human event. Bookkeeping, not one of the four stable steps. An approval
    gate's card also holds what is being approved: the plan's summary and the diff's stat."""

    def transaction() -> dict[str, Any]:
        conn = datasource.connection()
        card = {
            "question": node["question"],
            "schema": node["schema"],
            "timeoutSeconds": node["timeoutSeconds"],
            "askedAt": datetime.now(UTC).isoformat(),
        }
        if node.get("eventType") == "approval":
            summary = plan.get("summary") or plan["nodes"][0]["label"]
            stat = applied.get("stat") or {}
            card["question"] = (
                f"{node['question']} {summary} ({stat.get('files', 0)} files, "
                f"+{stat.get('insertions', 0)} -{stat.get('deletions', 0)})"
            )
            card["eventType"] = "approval"
            card["summary"] = summary
            card["diffStat"] = stat
        conn.execute(
            q("insert_next_artifact"),
            {
                "run_id": run_id,
                "step_id": "DecideST",
                "kind": "question_card",
                "uri": None,
                "inline": Jsonb(card),
                "sha256": records.sha256(records.canonical(card)),
            },
        )
        conn.execute(q("run_waiting_input"), {"run_id": run_id})
        return card

    return dict(datasource.run("AwaitInputST", transaction))


def decide_st(
    run_id: str, plan: dict[str, Any], answer: dict[str, Any] | None = None
) -> dict[str, Any]:
    """DecideST: the decision envelope — which tasks execute, and the human's answer if the
    plan asked for one."""

    def body(conn: Conn) -> dict[str, Any]:
        return records.decision(conn, run_id, plan, answer)

    return dict(_run_step(run_id, "DecideST", body))


def _injected_fault(conn: Conn, run_id: str, inputs: dict[str, Any], step_id: str) -> None:
    """Drill knob `inputs.faults = {"ExecuteST": {"kind": "net_timeout", "times": N}}`: the
    first N attempts of the step fail the way a flaky network would."""
    faults = inputs.get("faults")
    fault = faults.get(step_id) if isinstance(faults, dict) else None
    if not isinstance(fault, dict):
        return
    times = fault.get("times", 1)
    # Only a drill pays for this read: the attempt number is otherwise computed by the insert.
    row = conn.execute(q("next_attempt"), {"run_id": run_id, "step_id": step_id}).fetchone()
    assert row is not None
    attempt = int(row["attempt"])
    if isinstance(times, int) and attempt <= times:
        raise TransientStepError(
            f"{fault.get('kind', 'net_timeout')}: injected fault, attempt {attempt} of {times}"
        )


def executes_outside() -> bool:
    """Whether this worker's executor works outside ExecuteST's transaction (the sandbox, the
    webhook), rather than through the mock outside system inside it."""
    return hasattr(runtime.get().executor, "perform")


def perform(
    run_id: str,
    plan: dict[str, Any],
    decision: dict[str, Any],
    constraints: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The outside executor's work for ExecuteST, as a DBOS step: once it returned, a
    re-executed workflow reuses its outcome instead of running the command or sending the
    webhook again. A failure is recorded as a failed ExecuteST attempt. `constraints` are the
    intent's, when the workflow was started with it."""
    try:
        return _perform(run_id, plan, decision, constraints)
    except Exception as exc:
        error = _step_error(exc)
        _record_outside_failure(run_id, "ExecuteST", error.as_error("ExecuteST"))
        _record_failed_output(run_id)
        if error is exc:
            raise
        raise error from exc


@DBOS.step(name="PerformST")
def _perform(
    run_id: str,
    plan: dict[str, Any],
    decision: dict[str, Any],
    constraints: dict[str, Any] | None,
) -> dict[str, Any]:
    rt = runtime.get()
    executor = rt.executor
    assert isinstance(executor, OutsideExecutor)
    if constraints is None:
        with datasource.outside_transaction() as conn:  # released before the work starts
            constraints = _intent(conn, run_id)["constraints"]
    constraints = constraints or {}
    drill_hooks.entered_execute(run_id)
    clock = time.monotonic()
    workspace = rt.workspaces / run_id
    try:
        if executor.uses_workspace:
            _rebuild(run_id, plan)  # whatever an earlier, killed attempt left is gone
        work = Work(
            run_id=run_id,
            workspace=workspace,
            tasks=tuple(decision["tasks"]),
            test_command=plan.get("testCommand"),
            constraints=constraints,
            logs=rt.logs / run_id,
        )
        outcome = dict(executor.perform(work))
    except Exception as exc:
        seconds = time.monotonic() - clock
        metrics.step_attempt(
            metrics.PERFORM_STEP, metrics.outcome_of(_step_error(exc).code), seconds
        )
        raise
    metrics.step_attempt(metrics.PERFORM_STEP, "succeeded", time.monotonic() - clock)
    drill_hooks.after_effect(run_id)
    return outcome


def _record_outside_failure(run_id: str, step_id: str, error: dict[str, Any]) -> None:
    """The failed attempt of work done outside a transaction (a model's plan, an outside
    executor's work); a replay of the workflow neither records nor counts it again."""
    clock = time.monotonic()
    if _record_failed_attempt(run_id, step_id, datetime.now(UTC), error):
        # Its duration is the row's: the outside work's own is PerformST's (or the model's).
        seconds = time.monotonic() - clock
        metrics.step_attempt(step_id, metrics.outcome_of(error.get("code")), seconds)


@DBOS.step(name="RecordFailedOutputST")
def _record_failed_output(run_id: str) -> None:
    """A failed command's output files are artifacts too (numbered after earlier attempts'),
    so `sisu run show` of a failed run points at what it printed."""
    logs = runtime.get().logs / run_id
    found = [
        {
            "run_id": run_id,
            "step_id": "ExecuteST",
            "kind": stream,
            "uri": path.as_uri(),
            "inline": None,
            "sha256": records.sha256(path.read_bytes()),
        }
        for stream, path in (("stdout", logs / "stdout.log"), ("stderr", logs / "stderr.log"))
        if path.is_file()
    ]
    if found:
        with datasource.outside_transaction() as conn:
            conn.executemany(q("insert_next_artifact"), found)


def _record_outcome(conn: Conn, run_id: str, outcome: dict[str, Any]) -> dict[str, Any]:
    """ExecuteST's output for an outside executor's outcome; its files become artifacts,
    numbered after those of earlier, failed attempts."""
    artifacts = [
        {
            "run_id": run_id,
            "step_id": "ExecuteST",
            "kind": a["kind"],
            "uri": a["uri"],
            "inline": None,
            "sha256": a["sha256"],
        }
        for a in outcome.get("artifacts") or []
    ]
    if artifacts:
        conn.executemany(q("insert_next_artifact"), artifacts)
    executor = runtime.get().executor
    assert isinstance(executor, OutsideExecutor)
    return {"executor": executor.name, **outcome}


def execute_st(
    run_id: str,
    decision: dict[str, Any],
    outcome: dict[str, Any] | None = None,
    given_inputs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """ExecuteST: with an outside executor, record the `outcome` its work returned; otherwise
    deliver each task to the mock outside system. Each delivery carries the idempotency key
    (runId, stepId, taskKey) and is looked up first, so a step re-executed after a crash never
    delivers twice. The intent's inputs (its drill knobs) come with the workflow, or are read."""

    def body(conn: Conn) -> dict[str, Any]:
        if outcome is not None:
            return _record_outcome(conn, run_id, outcome)
        inputs = given_inputs if given_inputs is not None else _intent(conn, run_id)["inputs"]
        drill_hooks.entered_execute(run_id)
        sleep_ms = inputs.get("sleepMs", 0)
        if isinstance(sleep_ms, int | float) and sleep_ms > 0:
            time.sleep(sleep_ms / 1000)  # drill knob: hold the step open to be killed in
        _injected_fault(conn, run_id, inputs, "ExecuteST")
        executor = runtime.get().executor
        assert not isinstance(executor, OutsideExecutor)
        return records.deliver_tasks(
            executor, run_id, decision["tasks"], lambda: drill_hooks.after_effect(run_id)
        )

    return dict(_run_step(run_id, "ExecuteST", body, status_after="succeeded"))


def rejection(reason: str) -> dict[str, Any]:
    """The error of a run whose change a human rejected at the approval gate (it is canceled)."""
    return {"code": "rejected", "message": reason, "step": "DecideST"}


def finish_run(run_id: str, status: str, next_action: str | None, error: dict[str, Any]) -> None:
    """Record a run that ended badly (in the same transaction as this bookkeeping step)."""

    ended = False  # in this call, not a replay; and the run was not canceled meanwhile

    def transaction() -> None:
        nonlocal ended
        cur = datasource.connection().execute(
            q("run_finished_badly"),
            {"run_id": run_id, "status": status, "next_action": next_action, "error": Jsonb(error)},
        )
        ended = cur.rowcount == 1

    datasource.run("FinishRun", transaction)
    # Said once, by the process that committed it: a replayed FinishRun (recovery) returns its
    # checkpoint without running the transaction.
    if ended:
        metrics.run_ended(status)
        _log_outcome(run_id, status, next_action, error)


def _log_outcome(run_id: str, status: str, next_action: str | None, error: dict[str, Any]) -> None:
    """The one line an operator reads for a run that ended badly. No traceback: the error is
    expected, and what to do next is in the line."""
    message = " ".join(str(error.get("message") or "").split())
    hint = f"; repair: sisu run retry {run_id}" if next_action == "REPAIR" else ""
    outcome.log(
        logging.INFO if status == "canceled" else logging.WARNING,
        "run ended %s: %s%s",
        status,
        message,
        hint,
        extra={
            "run_id": run_id,
            "step": error.get("step"),
            "code": error.get("code"),
            "status": status,
        },
    )
