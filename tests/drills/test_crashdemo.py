"""`sisu crashdemo`: a worker is killed -9 inside the durable sleep and restarted; the rows must
show the workflow SUCCESS with each mark written exactly once, across two different processes."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import Result, pty_run, run_sisu
from tests.support.db import rows

DBOS_CLI = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "dbos")


@dataclass
class Drill:
    result: Result
    url: str

    @property
    def out(self) -> dict[str, Any]:
        body: dict[str, Any] = self.result.json()
        return body

    @property
    def workflow_id(self) -> str:
        return str(self.out["workflowId"])


@pytest.fixture(scope="module")
def drill(module_sisu_env: dict[str, str], module_db_url: str) -> Drill:
    result = run_sisu(["crashdemo", "--sleep", "2", "--json"], module_sisu_env, timeout=180)
    return Drill(result, module_db_url)


def test_exits_0_with_a_passing_result(drill: Drill) -> None:
    assert drill.result.exit_code == 0, drill.result.stderr
    assert drill.out["ok"] is True
    assert drill.out["marks"] == {"s1": 1, "s2": 1}


def test_workflow_status_is_success(drill: Drill) -> None:
    found = rows(
        drill.url,
        "SELECT status, name FROM dbos.workflow_status WHERE workflow_uuid = %s",
        (drill.workflow_id,),
    )
    assert found == [{"status": "SUCCESS", "name": "CrashDemoWF"}]


def marks(drill: Drill) -> list[dict[str, Any]]:
    return rows(
        drill.url,
        "SELECT step, created_at FROM app.marks WHERE workflow_id = %s ORDER BY id",
        (drill.workflow_id,),
    )


def test_exactly_one_s1_and_one_s2_mark(drill: Drill) -> None:
    assert [m["step"] for m in marks(drill)] == ["s1", "s2"]
    # Nothing else was marked by the drill at all.
    assert rows(drill.url, "SELECT count(*) AS n FROM app.marks") == [{"n": 2}]


def test_the_kill_landed_between_the_two_marks(drill: Drill) -> None:
    by_step = {m["step"]: m["created_at"] for m in marks(drill)}
    killed_at = datetime.fromisoformat(drill.out["killedAt"])
    assert by_step["s1"] < killed_at < by_step["s2"]
    run = rows(
        drill.url,
        "SELECT killed_at FROM app.workflow_runs WHERE workflow_id = %s",
        (drill.workflow_id,),
    )
    assert run == [{"killed_at": killed_at}]


def test_a_different_process_finished_the_workflow(drill: Drill) -> None:
    assert drill.out["killedPid"] != drill.out["resumedPid"]
    run = rows(
        drill.url,
        "SELECT killed_pid, resumed_pid FROM app.workflow_runs WHERE workflow_id = %s",
        (drill.workflow_id,),
    )
    assert run == [{"killed_pid": drill.out["killedPid"], "resumed_pid": drill.out["resumedPid"]}]


def test_the_drill_row_records_ok(drill: Drill) -> None:
    run = rows(
        drill.url,
        "SELECT kind, ok, finished_at FROM app.workflow_runs WHERE workflow_id = %s",
        (drill.workflow_id,),
    )
    assert len(run) == 1
    assert run[0]["kind"] == "crashdemo"
    assert run[0]["ok"] is True
    assert run[0]["finished_at"] is not None


def test_the_dbos_cli_sees_the_workflow_succeeded(drill: Drill, tmp_path: Path) -> None:
    proc = subprocess.run(
        [DBOS_CLI, "workflow", "list", "--sys-db-url", drill.url, "--limit", "100"],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # no dbos-config.yaml around to pick up
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    listed = {w["workflow_id"]: w for w in json.loads(proc.stdout)}
    assert drill.workflow_id in listed
    assert listed[drill.workflow_id]["status"] == "SUCCESS"


def test_crashdemo_in_a_terminal(sisu_env: dict[str, str], db_url: str) -> None:
    code, _shown = pty_run(["crashdemo", "--sleep", "2"], sisu_env, timeout=180)
    assert code == 0
    run = rows(db_url, "SELECT workflow_id, ok FROM app.workflow_runs")
    assert len(run) == 1 and run[0]["ok"] is True
    status = rows(
        db_url,
        "SELECT status FROM dbos.workflow_status WHERE workflow_uuid = %s",
        (run[0]["workflow_id"],),
    )
    assert status == [{"status": "SUCCESS"}]
