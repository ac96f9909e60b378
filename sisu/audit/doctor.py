"""`sisu doctor`: the ops manual's triage table as checks. Each finding says the symptom, how
it was checked, and the command that fixes it."""

from __future__ import annotations

import json
import os
import urllib.request
from typing import TYPE_CHECKING, Any

from sisu.config import Settings
from sisu.contracts.ops import DoctorReport, Finding
from sisu.db.connection import connect
from sisu.db.queries import q
from sisu.errors import SisuError

if TYPE_CHECKING:
    from sisu.workflow.steps.llm_compiler import LlmConfig


def _database(url: str | None) -> tuple[Finding, bool]:
    if url is None:
        return (
            Finding(
                name="database",
                ok=False,
                symptom="the embedded PostgreSQL is not running",
                check="postmaster.pid in $SISU_HOME/pg",
                fix="sisu db up",
            ),
            False,
        )
    try:
        with connect(url) as conn:
            row = conn.execute("SHOW server_version").fetchone()
    except SisuError as exc:
        return (
            Finding(
                name="database",
                ok=False,
                symptom=f"database unreachable: {exc.message}",
                check="connect to the database",
                fix="check SISU_DATABASE_URL, or `sisu db up` for the embedded server",
            ),
            False,
        )
    version = row["server_version"] if row else "?"
    return (
        Finding(
            name="database",
            ok=True,
            symptom=f"reachable (PostgreSQL {version})",
            check="connect",
            fix=None,
        ),
        True,
    )


def _workers(url: str, s: Settings) -> list[Finding]:
    params = {"dead_after_seconds": s.worker_dead_after_seconds}
    with connect(url) as conn:
        live = conn.execute(q("live_workers"), params).fetchall()
        stuck = conn.execute(q("doctor_stuck_versions"), params).fetchall()
        dead = conn.execute(q("doctor_dead_executors"), params).fetchall()
    found = [
        Finding(
            name="workers",
            ok=bool(live),
            symptom=(
                f"{len(live)} live worker(s): "
                + ", ".join(f"{w['executor_id']} ({w['app_version']})" for w in live)
                if live
                else "no live worker: queued runs will not start"
            ),
            check=f"app.workers heartbeats newer than {s.worker_dead_after_seconds:g}s",
            fix=None if live else f"sisu worker --app-version {s.app_version}",
            detail=[{"executorId": w["executor_id"], "appVersion": w["app_version"]} for w in live],
        )
    ]
    for row in stuck:
        if row["served"]:
            continue
        version = row["app_version"]
        found.append(
            Finding(
                name="stranded_version",
                ok=False,
                symptom=f"{row['n']} run(s) stuck queued on app version {version!r}, which no "
                f"live worker serves (oldest {row['oldest_s']:.0f}s, e.g. {row['example_run']})",
                check="dbos.workflow_status ENQUEUED runs against app.workers app versions",
                fix=f"sisu worker --app-version {version}   "
                f"(or move a run: sisu run resume RUN_ID --app-version V)",
                detail={"appVersion": version, "runs": row["n"], "exampleRun": row["example_run"]},
            )
        )
    for row in dead:
        found.append(
            Finding(
                name="dead_executor",
                ok=False,
                symptom=f"{row['n']} run(s) pending on executor {row['executor_id']!r}, which "
                "stopped heartbeating (killed?)",
                check="dbos.workflow_status PENDING runs against app.workers heartbeats",
                fix=f"sisu worker --executor-id {row['executor_id']} --app-version "
                f"{row['app_version']}   (a restarted worker recovers its own runs)",
                detail={"executorId": row["executor_id"], "runs": row["n"]},
            )
        )
    return found


def _stalled(url: str, s: Settings) -> list[Finding]:
    """Runs a live worker holds but runs no thread of (see the `stalled_runs` oracle)."""
    from sisu.audit.oracles import STALLED_AFTER_SECONDS

    params = {
        "run_ids": None,
        "dead_after_seconds": s.worker_dead_after_seconds,
        "stalled_after_seconds": STALLED_AFTER_SECONDS,
    }
    with connect(url) as conn:
        stalled = conn.execute(q("audit_stalled_runs"), params).fetchall()
    if not stalled:
        return []
    first = stalled[0]
    return [
        Finding(
            name="stalled_runs",
            ok=False,
            symptom=f"{len(stalled)} run(s) pending on a live worker that runs no thread of "
            f"them, idle up to {first['idle_seconds']}s (e.g. {first['run_id']} on "
            f"{first['executor_id']})",
            check="dbos.workflow_status PENDING runs against app.workers.active_workflows",
            fix=f"sisu run resume {first['run_id']} --app-version {first['app_version']}   "
            "(re-dispatches it from its next unfinished step; or restart that worker, which "
            "recovers all its runs)",
            detail=[
                {
                    "runId": r["run_id"],
                    "executorId": r["executor_id"],
                    "idleSeconds": r["idle_seconds"],
                }
                for r in stalled[:20]
            ],
        )
    ]


def _run_state(url: str, run_id: str) -> Finding:
    with connect(url) as conn:
        run = conn.execute(q("get_run"), {"id": run_id}).fetchone()
    if run is None:
        return Finding(
            name="run",
            ok=False,
            symptom=f"run {run_id} does not exist (404)",
            check="app.runs",
            fix="sisu run list",
        )
    status = run["status"]
    accepts = {
        "waiting_input": "events: sisu run event ID --payload JSON",
        "retries_exceeded": "repair: sisu run retry ID",
        "failed": "repair: sisu run retry ID",
        "queued": "cancel: sisu run cancel ID",
        "running": "cancel: sisu run cancel ID",
    }.get(status, "nothing: the run is finished")
    return Finding(
        name="run",
        ok=True,
        symptom=f"run {run_id} is {status}"
        + ("" if status == "waiting_input" else " — an event to it gets 409 invalid_state"),
        check="app.runs.status",
        fix=f"it accepts {accepts}",
        detail={"status": status, "nextAction": run["next_action"]},
    )


def _shim(api: str) -> Finding:
    target = api.rstrip("/") + "/healthz"
    try:
        with urllib.request.urlopen(target, timeout=3) as resp:
            body = json.loads(resp.read())
        ok = bool(body.get("ok"))
        symptom = f"api-shim healthy at {api} (app version {body.get('appVersion')})"
    except Exception as exc:
        ok, symptom = False, f"api-shim at {api} does not answer /healthz: {exc}"
    return Finding(
        name="api_shim",
        ok=ok,
        symptom=symptom,
        check=f"GET {target}",
        fix=None if ok else "sisu serve (with the same SISU_DATABASE_URL / SISU_HOME as workers)",
    )


# A worker registers its heartbeat row a moment after its process starts; a process born more
# than this after the row was written cannot be the one that wrote it (its pid was reused).
_PID_REUSE_SLACK_SECONDS = 1.0


def _listeners(port: int) -> list[int | None]:
    """The pids listening on `port` (None for one this user may not see); none when the
    system does not say."""
    import psutil

    try:
        conns = psutil.net_connections(kind="tcp")
    except psutil.Error:
        return []
    return sorted(
        {
            c.pid
            for c in conns
            if c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN
        },
        key=lambda pid: pid or 0,
    )


def _tied_row(url: str | None, s: Settings, pid: int, port: int) -> dict[str, Any] | None:
    """The heartbeat row of this database that `pid` on this host wrote as the worker with
    admin port `port`, or None when nothing ties them."""
    import socket

    import psutil

    if url is None:
        return None
    try:
        born = psutil.Process(pid).create_time()
        with connect(url) as conn:
            row = conn.execute(
                q("doctor_port_holder"),
                {
                    "host": socket.gethostname(),
                    "pid": pid,
                    "port": port,
                    "dead_after_seconds": s.worker_dead_after_seconds,
                },
            ).fetchone()
    except (psutil.Error, SisuError):
        return None
    if row is None or born > row["started_epoch"] + _PID_REUSE_SLACK_SECONDS:
        return None
    return dict(row)


def _ports(s: Settings, url: str | None) -> list[Finding]:
    """Who holds the configured ports. doctor judges only a process it can tie to a heartbeat
    row of this database (same host, same pid, that port as its admin port): a worker whose
    row stopped heartbeating is stale and `kill PID` is its fix. Any other holder — another
    deployment's worker, an api-shim, an unrelated program — is only named, with the way
    around it (another port), since nothing here says it is stale or whose it is."""
    import psutil

    found = []
    # Without ADMIN_PORT a new worker takes the next free port by itself: the way around a
    # held default is then no flag at all.
    admin_fix = (
        "use another port: sisu worker --admin-port N (or ADMIN_PORT)"
        if "admin_port" in s.model_fields_set
        else "nothing to pass: `sisu worker` without --admin-port takes the next free port "
        f"from {s.admin_port} up"
    )
    for label, port, flag in (
        ("api-shim port (PORT)", s.port, "use another port: sisu serve --port N (or PORT)"),
        ("worker admin port (ADMIN_PORT)", s.admin_port, admin_fix),
    ):
        for pid in _listeners(port):
            if pid is None:
                found.append(
                    Finding(
                        name="port",
                        ok=True,
                        symptom=f"{label} {port} is held by a process this user cannot see",
                        check="listening sockets",
                        fix=f"to start one here, {flag}",
                        detail={"port": port, "pid": None, "sisu": None, "executorId": None},
                    )
                )
                continue
            try:
                # One line, whatever the command line holds (`python -c` scripts have newlines).
                cmd = " ".join(" ".join(psutil.Process(pid).cmdline()).split())
            except psutil.Error:
                continue
            row = _tied_row(url, s, pid, port)
            detail = {
                "port": port,
                "pid": pid,
                "sisu": "sisu" in cmd,
                "executorId": row["executor_id"] if row else None,
            }
            held = f"{label} {port} is held by pid {pid}: {cmd[:120]}"
            if row is None:
                found.append(
                    Finding(
                        name="port",
                        ok=True,
                        symptom=f"{held} — "
                        + (
                            "not a worker of this database (another deployment, an api-shim, "
                            "or another program)"
                            if url is not None
                            else "whose, doctor cannot tell without the database"
                        ),
                        check="listening sockets against app.workers (host, pid, admin port)",
                        fix=f"to start one here, {flag}",
                        detail=detail,
                    )
                )
            elif row["alive"]:
                found.append(
                    Finding(
                        name="port",
                        ok=True,
                        symptom=f"{held} — worker {row['executor_id']} of this database, live",
                        check="listening sockets against app.workers (host, pid, admin port)",
                        fix=None,
                        detail=detail,
                    )
                )
            else:
                why = (
                    "stopped"
                    if row["stopped_at"] is not None
                    else f"silent for {row['silent_seconds']:.0f}s"
                )
                found.append(
                    Finding(
                        name="port",
                        ok=False,
                        symptom=f"{held} — worker {row['executor_id']} of this database, whose "
                        f"heartbeat {why}: stale, it blocks a new worker on this port",
                        check="listening sockets against app.workers (host, pid, admin port)",
                        fix=f"kill {pid}",
                        detail=detail,
                    )
                )
    return found


def _model(s: Settings) -> Finding:
    """With SISU_COMPILER=llm: the configured model is reachable. openai and anthropic: the
    server answers its model list (one cheap request, no tokens spent), takes the key and
    lists the model. google and google-vertex: only that a key or credentials are there —
    sisu sends Google nothing to check them."""
    from sisu.errors import ValidationFailed
    from sisu.workflow.steps.llm_compiler import config_from

    key = s.llm_api_key.get_secret_value() if s.llm_api_key else None
    try:
        cfg = config_from(s.llm_model, s.llm_base_url, key)
    except ValidationFailed as exc:
        field = (exc.details or [{}])[0].get("field") if isinstance(exc.details, list) else None
        fix = (
            "set SISU_LLM_API_KEY"
            if field == "SISU_LLM_API_KEY"
            else "set SISU_LLM_MODEL=provider:name"
        )
        return Finding(name="model", ok=False, symptom=exc.message, check=str(field), fix=fix)
    if cfg.kind in ("openai", "anthropic"):
        return _model_list(cfg)
    return _google_credentials(cfg)


def _model_list(cfg: LlmConfig) -> Finding:
    where = cfg.base_url or "the provider's API"
    check = f"GET {where}/models"
    try:
        listed = _list_models(cfg)
    except PermissionError:
        return Finding(name="model", ok=False, symptom=f"{where} refused the key",
                       check=check, fix="set SISU_LLM_API_KEY")  # fmt: skip
    except ConnectionError as exc:
        return Finding(
            name="model", ok=False, symptom=f"{where} does not answer: {exc}",
            check=check, fix="start the model server, or set SISU_LLM_BASE_URL",
        )  # fmt: skip
    if cfg.model_name not in listed:
        return Finding(
            name="model", ok=False,
            symptom=f"{where} does not list model {cfg.model_name!r}",
            check=check, fix=f"set SISU_LLM_MODEL to one of: {', '.join(listed[:10])}",
            detail={"models": listed[:50]},
        )  # fmt: skip
    return Finding(name="model", ok=True, symptom=f"model {cfg.model} answers at {where}",
                   check=check, fix=None)  # fmt: skip


def _list_models(cfg: LlmConfig) -> list[str]:
    """The model ids the provider lists; PermissionError when it refuses the key,
    ConnectionError (naming the error's type) when it does not answer."""
    if cfg.kind == "anthropic":
        import anthropic

        aclient = anthropic.Anthropic(
            base_url=cfg.base_url, api_key=cfg.api_key, max_retries=0, timeout=5
        )
        try:
            return [m.id for m in aclient.models.list(limit=1000)]
        except (anthropic.AuthenticationError, anthropic.PermissionDeniedError) as exc:
            raise PermissionError from exc
        except anthropic.AnthropicError as exc:
            raise ConnectionError(type(exc).__name__) from exc
    import openai

    client = openai.OpenAI(
        base_url=cfg.base_url, api_key=cfg.api_key or "none", max_retries=0, timeout=5
    )
    try:
        return [m.id for m in client.models.list()]
    except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
        raise PermissionError from exc
    except openai.OpenAIError as exc:
        raise ConnectionError(type(exc).__name__) from exc


def _google_credentials(cfg: LlmConfig) -> Finding:
    """Google's model list needs a request sisu does not make here: only the credentials'
    presence is checked (google-vertex: a key, or application default credentials)."""
    check = "a key or credentials are set (Google is not asked)"
    if cfg.api_key is not None:
        return Finding(
            name="model", ok=True, check=check, fix=None,
            symptom=f"model {cfg.model}: a key is set ({cfg.key_var}); not checked with Google",
        )  # fmt: skip
    from pathlib import Path

    adc = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS") or str(
        Path.home() / ".config" / "gcloud" / "application_default_credentials.json"
    )
    env_key = next((v for v in ("GOOGLE_API_KEY", "GEMINI_API_KEY") if os.environ.get(v)), None)
    if env_key or Path(adc).is_file():
        found = env_key or adc
        return Finding(
            name="model", ok=True, check=check, fix=None,
            symptom=f"model {cfg.model}: credentials are set ({found}); not checked with Google",
        )  # fmt: skip
    return Finding(
        name="model", ok=False, check=check,
        symptom=f"model {cfg.model}: no key and no application default credentials",
        fix="set SISU_LLM_API_KEY, or GOOGLE_APPLICATION_CREDENTIALS "
        "(with GOOGLE_CLOUD_PROJECT and GOOGLE_CLOUD_LOCATION)",
    )  # fmt: skip


def _policy() -> Finding:
    from pathlib import Path

    from sisu.audit import policy

    violations = policy.check(Path(__file__).resolve().parents[1])
    return Finding(
        name="policy",
        ok=not violations,
        symptom="workflow purity and shim isolation hold"
        if not violations
        else f"{len(violations)} policy violation(s), first: {violations[0]}",
        check="sisu policy check",
        fix=None if not violations else "remove clock/random/env/IO use from workflow/wf/",
    )


def diagnose(
    s: Settings, url: str | None, *, api: str | None = None, run_id: str | None = None
) -> DoctorReport:
    findings: list[Finding] = []
    db_finding, reachable = _database(url)
    findings.append(db_finding)
    if reachable and url is not None:
        findings.extend(_workers(url, s))
        findings.extend(_stalled(url, s))
        if run_id:
            findings.append(_run_state(url, run_id))
    if api:
        findings.append(_shim(api))
    if s.compiler == "llm":
        findings.append(_model(s))
    findings.extend(_ports(s, url if reachable else None))
    findings.append(_policy())
    return DoctorReport(ok=all(f.ok for f in findings), findings=findings)


def as_dicts(report: DoctorReport) -> list[dict[str, Any]]:
    return [f.model_dump(by_alias=True) for f in report.findings]
