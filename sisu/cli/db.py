"""`sisu db`: the database sisu runs on (embedded PostgreSQL 18 by default)."""

from __future__ import annotations

import os
import shutil

import typer

from sisu.cli import _output
from sisu.cli._output import JSON
from sisu.cli._settings import database_url, settings

app = typer.Typer(
    help="Manage sisu's database: the embedded PostgreSQL of SISU_HOME, or SISU_DATABASE_URL.",
    no_args_is_help=True,
)


@app.command()
def up(json: bool = JSON) -> None:
    """Start the database (embedded mode) and apply pending migrations."""
    from sisu.db import admin

    _output.use_json(json)
    s = settings()
    database_url(s)
    st = admin.status(s)
    if json:
        _output.emit(st)
    else:
        _output.info(f"database ready ({st.mode}, PostgreSQL {st.server_version}): {st.url}")


@app.command()
def down() -> None:
    """Stop the embedded PostgreSQL server of SISU_HOME (workers lose their database)."""
    from sisu.db import embedded

    s = settings()
    if not s.embedded:
        _output.info("SISU_DATABASE_URL is set: an external database is not sisu's to stop")
        return
    stopped = embedded.stop(s.home)
    _output.info(
        "embedded PostgreSQL stopped" if stopped else "embedded PostgreSQL was not running"
    )


@app.command()
def status(json: bool = JSON) -> None:
    """Show the server, its version, the URL (no password) and the schema versions."""
    from sisu.db import admin

    _output.use_json(json)
    st = admin.status(settings())
    if json:
        _output.emit(st)
        return
    rows = {
        "mode": st.mode,
        "running": "yes" if st.running else "no (starts on first use, or `sisu db up`)",
        "url": st.url or "-",
        "server": f"PostgreSQL {st.server_version}" if st.server_version else "-",
        "data dir": st.data_dir or "-",
    }
    if st.app_schema:
        pending = ", ".join(st.app_schema.pending) or "none"
        rows["schema app"] = f"{st.app_schema.current or 'empty'} (pending: {pending})"
        rows["schema dbos"] = str(st.dbos_schema_version or "not created")
    for key, value in rows.items():
        _output.data(f"{key:12} {value}")


URL_HELP = (
    "Print a libpq URL of the database, usable by psql, psycopg and `dbos --sys-db-url`.\n\n"
    "Without --show-password the password is replaced by *** (in the user part, a password= "
    "parameter or a key=value conninfo): that form is for reading, logs and tickets, not for "
    "connecting. Pass --show-password to hand the URL to psql: "
    'psql "$(sisu db url --show-password)".'
)


@app.command(help=URL_HELP)
def url(
    show_password: bool = typer.Option(
        False,
        "--show-password",
        help="Print the URL with its password, for psql and other clients (an external "
        "database's; the embedded server has none). Mind where the output goes.",
    ),
) -> None:
    from sisu.db.url import redact

    u = database_url(migrate=False)
    _output.data(u if show_password else redact(u))


@app.command()
def migrate(
    print_sql: bool = typer.Option(
        False,
        "--print",
        help="Print the SQL of sisu's migrations without connecting (all of them: without a "
        "connection sisu cannot know which are applied).",
    ),
    json: bool = JSON,
) -> None:
    """Apply pending migrations: sisu's `app` schema, then DBOS's `dbos` schema."""
    from sisu.db import migrations

    if print_sql:
        _output.data(migrations.script())
        return
    _output.use_json(json)
    u = database_url(migrate=False)
    applied = migrations.migrate_app(u)
    migrations.migrate_dbos(u)
    if json:
        _output.emit_obj({"applied": applied, "latest": migrations.latest_version()})
    else:
        done = ", ".join(applied) if applied else "nothing to apply"
        _output.info(f"app schema at {migrations.latest_version()} ({done}); dbos schema current")


@app.command()
def reset(
    system: bool = typer.Option(False, "--sys", help="Also drop DBOS's system schema `dbos`."),
    yes: bool = typer.Option(False, "--yes", help="Confirm: this deletes every run and intent."),
) -> None:
    """Drop and recreate the `app` schema (and `dbos` with --sys). Refuses without --yes."""
    from sisu.db import admin
    from sisu.errors import ConfirmationRequired

    what = "app and dbos schemas" if system else "app schema"
    if not yes:
        raise ConfirmationRequired(f"`sisu db reset` drops the {what}; pass --yes to confirm")
    admin.reset(database_url(migrate=False), system=system)
    _output.info(f"reset the {what}")


@app.command()
def psql(
    args: list[str] = typer.Argument(None, help="Extra arguments for psql (after --)."),
) -> None:
    """Open psql on sisu's database (the embedded server's bundled psql, or one on PATH)."""
    from sisu.db import embedded
    from sisu.errors import ToolMissing

    u = database_url(migrate=False)
    bundled = embedded.bin_dir() / "psql"
    exe = str(bundled) if bundled.exists() else shutil.which("psql")
    if exe is None:
        raise ToolMissing("no psql client found; install postgresql-client")
    os.execv(exe, [exe, u, *(args or [])])
