"""Shared by the chaos, audit and doctor tests: databases cloned from the session template for
a module's worth of tests, and the environment of a `sisu` subprocess bound to one."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from tests.runloop_support import clone_template, drop_database


def sisu_env_for(url: str | None, home: Path, **extra: str) -> dict[str, str]:
    """What `sisu_env` builds, for any database (or none: `url=None` means the embedded
    server of `home`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SISU_", "DBOS__"))}
    env.update(
        SISU_HOME=str(home),
        NO_COLOR="1",
        COLUMNS="200",
        PYTHONUNBUFFERED="1",
    )
    if url is not None:
        env["SISU_DATABASE_URL"] = url
    env.update(extra)
    return env


@contextmanager
def cloned_database(admin_url: str, template: str, prefix: str = "sisu_ops") -> Iterator[str]:
    """A fresh database cloned from `template` (the session template, or a database a module
    prepared), dropped at exit."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    # CREATE DATABASE … TEMPLATE refuses while anything is still connected to the template;
    # a worker that just exited may take a moment to disappear from pg_stat_activity.
    deadline = time.monotonic() + 15
    while True:
        try:
            _, url = clone_template(admin_url, template, name)
            break
        except psycopg.errors.ObjectInUse:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    try:
        yield url
    finally:
        drop_database(admin_url, name)


@contextmanager
def throwaway_home(prefix: str) -> Iterator[Path]:
    """A short SISU_HOME for a test's own embedded server (its socket lives in the data
    directory); the server and its data are destroyed at exit (as root the data lives outside
    the home, under /var/lib/sisu/pg)."""
    from sisu.db import embedded

    home = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        yield home
    finally:
        embedded.destroy(home)
        shutil.rmtree(home, ignore_errors=True)
