"""`sisu top` as an operator meets it, on real runs of a real `sisu worker`: `--once --json` prints
run counts by status that agree with paging through `sisu run list --json`, and panels that agree
with `run inbox`, `queue list` and the rows; in a real terminal the dashboard redraws until
Ctrl-C, which exits 0; without a terminal it prints one frame; NO_COLOR means no colour."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pexpect
import pytest

from sisu.contracts.runs import RUN_STATUSES
from sisu.drills.processes import WorkerProcess
from tests.support.cli import fast_retry_env, pty_run, run_sisu, spawn_sisu
from tests.support.db import rows, scalar
from tests.support.runs import ASK_GOAL, fast_backend, start_intent, wait_run_status
from tests.support.workers import running_worker, wait_worker_ready

FAULTY = {"faults": {"ExecuteST": {"kind": "net_timeout", "times": 99}}}
# What the module's runs settle in: three kinds of intent, one waiting run then canceled.
WANTED = {"succeeded": 3, "waiting_input": 2, "retries_exceeded": 2, "canceled": 1}
# An SGR sequence that sets a colour (foreground or background, 8, 16, 256 or true colour).
COLOUR = re.compile(r"\x1b\[(?:\d+;)*(?:3[0-8]|4[0-8]|9[0-7]|10[0-7])(?:;\d+)*m")


@pytest.fixture(scope="module")
def top_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("top")


@pytest.fixture(scope="module")
def env(module_db_url: str, top_tmp: Path) -> dict[str, str]:
    return fast_retry_env(module_db_url, top_tmp / "home")


@pytest.fixture(scope="module")
def worker(module_db_url: str, top_tmp: Path) -> Iterator[WorkerProcess]:
    with running_worker(
        module_db_url, top_tmp, name="top", concurrency=4, fast_retries=True, kill=True
    ) as w:
        wait_worker_ready(module_db_url, w)
        yield w


@pytest.fixture(scope="module")
def runs(module_db_url: str, worker: WorkerProcess) -> dict[str, list[str]]:
    """Runs of several statuses, each settled: status → run ids."""
    from sisu.service import repair

    made: dict[str, list[str]] = {status: [] for status in WANTED}
    with fast_backend(module_db_url) as b:
        for _ in range(3):
            made["succeeded"].append(start_intent(b, "record the figures"))
        for _ in range(3):
            made["waiting_input"].append(start_intent(b, ASK_GOAL))
        for _ in range(2):
            made["retries_exceeded"].append(start_intent(b, "deliver", inputs=FAULTY))
        for status, ids in made.items():
            for run_id in ids:
                wait_run_status(module_db_url, run_id, status, worker=worker, timeout=120)
        canceled = made["waiting_input"].pop()
        repair.cancel_run(b, canceled)
        made["canceled"].append(canceled)
        wait_run_status(module_db_url, canceled, "canceled", worker=worker)
    assert {s: len(ids) for s, ids in made.items()} == WANTED
    return made


def top_json(env: dict[str, str]) -> dict[str, Any]:
    result = run_sisu(["top", "--once", "--json"], env)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    frame: dict[str, Any] = result.json()
    return frame


def run_list_statuses(env: dict[str, str]) -> Counter[str]:
    """Every run's status, paging through `sisu run list --json` three at a time."""
    seen: Counter[str] = Counter()
    after: str | None = None
    for _ in range(50):
        flags = ["--limit", "3", *(["--after", after] if after else [])]
        result = run_sisu(["run", "list", *flags, "--json"], env)
        assert result.exit_code == 0, result.stderr
        page = result.json()
        seen.update(item["status"] for item in page["items"])
        after = page["next"]
        if after is None:
            return seen
    raise AssertionError("run list never ended")


def test_top_once_json_counts_agree_with_run_list(
    env: dict[str, str], runs: dict[str, list[str]]
) -> None:
    frame = top_json(env)
    listed = run_list_statuses(env)
    assert sum(listed.values()) == sum(WANTED.values())  # the pages held every run once
    counts = frame["runs"]
    assert counts["finishedCounts"] == "exact"
    assert counts["byStatus"] == {status: listed.get(status, 0) for status in RUN_STATUSES}
    assert {s: n for s, n in counts["byStatus"].items() if n} == WANTED
    assert counts["total"] == sum(listed.values())
    assert counts["inFlight"] == WANTED["waiting_input"]


def test_top_panels_agree_with_the_other_commands_and_the_rows(
    env: dict[str, str], runs: dict[str, list[str]], worker: WorkerProcess, module_db_url: str
) -> None:
    frame = top_json(env)

    inbox = run_sisu(["run", "inbox", "--json"], env).json()
    assert frame["inbox"]["count"] == len(inbox["items"]) == WANTED["waiting_input"]
    assert frame["inbox"]["oldestAgeSeconds"] >= 0

    failures = {f["runId"]: f for f in frame["failures"]}
    assert set(failures) == set(runs["retries_exceeded"])
    for f in failures.values():
        assert (f["status"], f["code"], f["step"]) == (
            "retries_exceeded", "retries_exceeded", "ExecuteST"
        )  # fmt: skip

    mine = [w for w in frame["workers"] if w["executorId"] == worker.executor_id]
    assert len(mine) == 1 and mine[0]["alive"] and mine[0]["appVersion"] == "v1"
    pending = scalar(
        module_db_url,
        "SELECT count(*) FROM dbos.workflow_status WHERE executor_id = %s AND status = 'PENDING'",
        (worker.executor_id,),
    )
    assert mine[0]["inFlight"] == pending == WANTED["waiting_input"]

    depth: Counter[tuple[str | None, str]] = Counter()
    for row in run_sisu(["queue", "list", "--json"], env).json()["queues"]:
        depth[(row["lane"], row["status"])] += row["count"]
    assert {(lane["lane"], "PENDING"): lane["inFlight"] for lane in frame["lanes"]} == {
        key: n for key, n in depth.items() if key[1] == "PENDING"
    }
    assert sum(lane["queued"] for lane in frame["lanes"]) == 0

    finished = sum(n for s, n in WANTED.items() if s != "waiting_input")
    assert frame["throughput"]["windows"][-1]["minutes"] == 15
    assert frame["throughput"]["windows"][-1]["finished"] == finished
    assert sum(frame["throughput"]["perMinute"]) == finished
    attempts = scalar(
        module_db_url,
        "SELECT count(*) FROM app.run_steps s JOIN app.runs r ON r.id = s.run_id"
        " WHERE r.status <> 'waiting_input' AND s.finished_at > now() - interval '15 minutes'",
    )
    latency = frame["stepLatency"]
    assert latency["runs"] == finished
    assert latency["all"]["attempts"] == attempts > 0
    assert 0 <= latency["all"]["p50Ms"] <= latency["all"]["p95Ms"]
    by_step = {s["stepId"]: s["attempts"] for s in latency["byStep"]}
    assert sum(by_step.values()) == attempts
    # Out of attempts at ExecuteST: the faulty runs' failed attempts are there too.
    failed = rows(
        module_db_url,
        "SELECT count(*)::int AS n FROM app.run_steps WHERE step_id = 'ExecuteST'"
        " AND run_id = ANY(%s)",
        (runs["retries_exceeded"],),
    )[0]["n"]
    assert by_step["ExecuteST"] == WANTED["succeeded"] + failed


def test_top_in_a_terminal_redraws_until_ctrl_c_which_exits_0(
    env: dict[str, str], runs: dict[str, list[str]], worker: WorkerProcess
) -> None:
    child = spawn_sisu(["top", "--interval", "0.3"], env, timeout=60)
    try:
        child.expect("Runs by status")
        child.expect(worker.executor_id)
        child.expect("Last failures")
        # A second frame: the dashboard is live, not printed once.
        child.expect("sisu top")
        child.expect("Last failures")
        child.sendintr()
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert (child.exitstatus, child.signalstatus) == (0, None)
    assert "Traceback" not in (child.before or "")


def test_top_without_a_terminal_prints_one_frame_and_exits(
    env: dict[str, str], runs: dict[str, list[str]]
) -> None:
    shown = run_sisu(["top"], env, timeout=60)
    assert shown.exit_code == 0, shown.stderr
    assert shown.stdout.count("Runs by status") == 1
    assert "Last failures" in shown.stdout
    for run_id in runs["retries_exceeded"]:
        assert run_id in shown.stdout

    numbers = run_sisu(["top", "--json"], env, timeout=60)
    assert numbers.exit_code == 0, numbers.stderr
    frame = json.loads(numbers.stdout)  # exactly one document
    assert {s: n for s, n in frame["runs"]["byStatus"].items() if n} == WANTED


def test_top_honours_no_color(env: dict[str, str], runs: dict[str, list[str]]) -> None:
    coloured = {k: v for k, v in env.items() if k != "NO_COLOR"} | {"TERM": "xterm-256color"}
    code, shown = pty_run(["top", "--once"], coloured, timeout=60)
    assert code == 0, shown
    # Guards the check below: in a terminal, statuses and worker states are coloured.
    assert COLOUR.search(shown), shown[:500]

    code, shown = pty_run(["top", "--once"], coloured | {"NO_COLOR": "1"}, timeout=60)
    assert code == 0, shown
    assert "Runs by status" in shown
    assert not COLOUR.search(shown), COLOUR.findall(shown)[:5]
