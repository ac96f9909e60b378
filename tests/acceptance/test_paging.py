"""`run list` and `run inbox` a page at a time, through the installed `sisu` and a real
`sisu serve` over HTTP: 45 runs at `--limit 20` are 20, 20 and the last 5 with `next: null`; the
pages together hold every run once, in order, also when runs are created or leave the list
between two pages; a malformed cursor or limit is refused (exit 2 / 400 naming the field)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.cli import Result, run_sisu
from tests.support.db import scalar
from tests.support.envelopes import error_of
from tests.support.paging import inbox_order, run_list_order, seed_runs
from tests.support.serve import serve_client

Page = dict[str, Any]


def cli_page(env: dict[str, str], command: list[str], *flags: str) -> Page:
    result = run_sisu([*command, *flags, "--json"], env)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    page: Page = result.json()
    assert list(page) == ["items", "next"], page
    return page


def ids(page: Page) -> list[str]:
    return [item["runId"] for item in page["items"]]


def page_through(
    fetch: Callable[[str | None], Page], between: Callable[[int], object] = lambda _: None
) -> list[Page]:
    """Every page, following `next` until it is null; `between(n)` runs after page n."""
    pages = [fetch(None)]
    while pages[-1]["next"] is not None:
        assert len(pages) < 20, "the pages never end"
        between(len(pages))
        pages.append(fetch(pages[-1]["next"]))
    return pages


def assert_sizes_and_order(pages: list[Page], sizes: list[int], expected: list[str]) -> None:
    assert [len(p["items"]) for p in pages] == sizes
    assert all(p["next"] for p in pages[:-1])
    assert pages[-1]["next"] is None
    listed = [run_id for page in pages for run_id in ids(page)]
    # Nothing repeated, nothing skipped, in the list's order.
    assert listed == expected


# --- through the CLI -------------------------------------------------------------------------


def test_run_list_pages_of_20(sisu_env: dict[str, str], db_url: str) -> None:
    seed_runs(db_url, 45)
    expected = run_list_order(db_url)

    def fetch(after: str | None) -> Page:
        flags = ["--limit", "20", *(["--after", after] if after else [])]
        return cli_page(sisu_env, ["run", "list"], *flags)

    # Runs created between two pages are newer than every listed one: they head the list, and
    # the pages being read go on where they left off.
    pages = page_through(fetch, between=lambda _: seed_runs(db_url, 3, start=datetime.now(UTC)))
    assert_sizes_and_order(pages, [20, 20, 5], expected)
    assert scalar(db_url, "SELECT count(*) FROM app.runs") == 45 + 2 * 3


def test_run_list_by_status_pages_only_that_status(sisu_env: dict[str, str], db_url: str) -> None:
    seed_runs(db_url, 45, status="failed")
    seed_runs(db_url, 30, status="succeeded")
    expected = run_list_order(db_url, "failed")
    assert len(expected) == 45

    def fetch(after: str | None) -> Page:
        flags = ["--status", "failed", "--limit", "20", *(["--after", after] if after else [])]
        return cli_page(sisu_env, ["run", "list"], *flags)

    pages = page_through(fetch)
    assert_sizes_and_order(pages, [20, 20, 5], expected)
    assert {item["status"] for page in pages for item in page["items"]} == {"failed"}


def test_run_list_shows_the_page_and_how_to_get_the_next(
    sisu_env: dict[str, str], db_url: str
) -> None:
    seed_runs(db_url, 45, status="failed")
    expected = run_list_order(db_url)
    page = cli_page(sisu_env, ["run", "list"], "--status", "failed", "--limit", "20")

    shown = run_sisu(["run", "list", "--status", "failed", "--limit", "20"], sisu_env)
    assert shown.exit_code == 0, shown.stderr
    assert [run_id for run_id in expected if run_id in shown.stdout] == expected[:20]
    # The command for the next page goes to stderr, stdout stays the data.
    hint = f"sisu run list --status failed --limit 20 --after {page['next']}"
    assert hint in shown.stderr, shown.stderr
    assert "--after" not in shown.stdout

    second = cli_page(sisu_env, ["run", "list"], "--limit", "20", "--after", page["next"])
    last = run_sisu(["run", "list", "--limit", "20", "--after", second["next"]], sisu_env)
    assert last.exit_code == 0, last.stderr
    assert [run_id for run_id in expected if run_id in last.stdout] == expected[40:]
    assert "--after" not in last.stderr, last.stderr


def test_inbox_pages_of_20(sisu_env: dict[str, str], db_url: str) -> None:
    seed_runs(db_url, 45, status="waiting_input")
    seed_runs(db_url, 10, status="running")
    expected = inbox_order(db_url)
    assert len(expected) == 45

    def fetch(after: str | None) -> Page:
        flags = ["--limit", "20", *(["--after", after] if after else [])]
        return cli_page(sisu_env, ["run", "inbox"], *flags)

    pages = page_through(fetch)
    assert_sizes_and_order(pages, [20, 20, 5], expected)
    first = pages[0]["items"][0]
    assert set(first) == {
        "runId", "question", "answerSchema", "askedAt", "ageSeconds", "timeLeftSeconds"
    }  # fmt: skip


def test_inbox_pages_stay_whole_while_runs_come_and_go(
    sisu_env: dict[str, str], db_url: str
) -> None:
    """Between two pages a listed run is answered (it leaves the inbox) and new runs start to
    wait: the next page starts right after the last run shown, with no run skipped (an OFFSET
    would skip one here), and the new runs come last, as the longest waiting come first."""
    seed_runs(db_url, 45, status="waiting_input")
    before = inbox_order(db_url)
    added: list[str] = []

    def churn(after_page: int) -> None:
        if after_page == 1:
            with_status(db_url, before[3], "running")
            added.extend(seed_runs(db_url, 2, status="waiting_input", start=datetime.now(UTC)))

    def fetch(after: str | None) -> Page:
        flags = ["--limit", "20", *(["--after", after] if after else [])]
        return cli_page(sisu_env, ["run", "inbox"], *flags)

    pages = page_through(fetch, between=churn)
    # The two new runs share a timestamp (seed_runs), so between them the order is by id.
    added_in_order = [run_id for run_id in inbox_order(db_url) if run_id in added]
    assert sorted(added_in_order) == sorted(added)
    assert_sizes_and_order(pages, [20, 20, 7], before + added_in_order)
    assert inbox_order(db_url) == [r for r in before if r != before[3]] + added_in_order


def with_status(url: str, run_id: str, status: str) -> None:
    scalar(url, "UPDATE app.runs SET status = %s WHERE id = %s RETURNING id", (status, run_id))


def cursor_of(list_name: str, at: str, run_id: str) -> str:
    raw = json.dumps({"list": list_name, "at": at, "id": run_id}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


BAD_CURSORS = [
    pytest.param("nope!", id="not-base64url"),
    pytest.param("bm9wZQ", id="base64-not-json"),
    pytest.param(base64.urlsafe_b64encode(b"[1, 2]").decode().rstrip("="), id="json-not-object"),
    pytest.param(cursor_of("runs", "yesterday", "r"), id="bad-time"),
    pytest.param(cursor_of("runs", "2026-01-01T00:00:00", "r"), id="time-without-zone"),
    pytest.param(cursor_of("runs", "2026-01-01T00:00:00+00:00", ""), id="empty-id"),
    pytest.param(cursor_of("inbox", "2026-01-01T00:00:00+00:00", "r"), id="other-list"),
    pytest.param("A" * 600, id="too-long"),
    pytest.param("", id="empty"),
]


@pytest.mark.parametrize("cursor", BAD_CURSORS)
def test_a_bad_cursor_is_exit_2_naming_after(sisu_env: dict[str, str], cursor: str) -> None:
    result = run_sisu(["run", "list", "--after", cursor, "--json"], sisu_env)
    assert_refused(result, "after")


@pytest.mark.parametrize("limit", ["0", "1001", "-5"])
@pytest.mark.parametrize("command", [["run", "list"], ["run", "inbox"]], ids=["list", "inbox"])
def test_a_bad_limit_is_exit_2_naming_limit(
    sisu_env: dict[str, str], command: list[str], limit: str
) -> None:
    assert_refused(run_sisu([*command, "--limit", limit, "--json"], sisu_env), "limit")


def test_an_inbox_cursor_is_not_a_run_list_cursor(sisu_env: dict[str, str], db_url: str) -> None:
    seed_runs(db_url, 3, status="waiting_input")
    listed = cli_page(sisu_env, ["run", "list"], "--limit", "1")["next"]
    waiting = cli_page(sisu_env, ["run", "inbox"], "--limit", "1")["next"]
    assert_refused(run_sisu(["run", "inbox", "--after", listed, "--json"], sisu_env), "after")
    assert_refused(run_sisu(["run", "list", "--after", waiting, "--json"], sisu_env), "after")


def assert_refused(result: Result, field: str) -> None:
    assert result.exit_code == 2, (result.stdout, result.stderr)
    body = result.json()
    assert body["error"] == "validation_error", body
    assert [d["field"] for d in body["details"]] == [field], body


# --- over HTTP -------------------------------------------------------------------------------


@pytest.fixture
def api(sisu_env: dict[str, str], tmp_path: Path) -> Iterator[httpx.Client]:
    with serve_client(sisu_env, tmp_path / "serve.log", timeout=30) as client:
        yield client


def http_page(api: httpx.Client, path: str, **params: Any) -> Page:
    r = api.get(path, params={k: v for k, v in params.items() if v is not None})
    assert r.status_code == 200, r.text
    page: Page = r.json()
    assert list(page) == ["items", "next"], page
    return page


def test_http_pages_runs_and_the_inbox(api: httpx.Client, db_url: str) -> None:
    seed_runs(db_url, 45, status="waiting_input")
    seed_runs(db_url, 45, status="failed")

    failed = run_list_order(db_url, "failed")
    pages = page_through(
        lambda after: http_page(api, "/runs", status="failed", limit=20, after=after),
        between=lambda _: seed_runs(db_url, 2, status="failed", start=datetime.now(UTC)),
    )
    assert_sizes_and_order(pages, [20, 20, 5], failed)

    waiting = inbox_order(db_url)
    pages = page_through(lambda after: http_page(api, "/inbox", limit=20, after=after))
    assert_sizes_and_order(pages, [20, 20, 5], waiting)

    everything = run_list_order(db_url)
    assert len(everything) == 45 + 45 + 2 * 2
    pages = page_through(lambda after: http_page(api, "/runs", limit=40, after=after))
    assert_sizes_and_order(pages, [40, 40, 14], everything)
    # The default page is 50.
    assert len(http_page(api, "/runs")["items"]) == 50


@pytest.mark.parametrize("path", ["/runs", "/inbox"])
@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"after": "nope!"}, "after"),
        ({"after": "bm9wZQ"}, "after"),
        ({"after": cursor_of("runs", "2026-01-01T00:00:00+00:00", "")}, "after"),
        ({"limit": 0}, "query.limit"),
        ({"limit": 1001}, "query.limit"),
    ],
)
def test_http_refuses_a_bad_cursor_or_limit(
    api: httpx.Client, path: str, params: dict[str, Any], field: str
) -> None:
    body = error_of(api.get(path, params=params), 400, "validation_error")
    assert [d["field"] for d in body["details"]] == [field], body
