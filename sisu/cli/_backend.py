"""The service-layer backend for one CLI command, and which database it reads."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sisu.service.backend import Backend


@contextmanager
def backend() -> Iterator[Backend]:
    from sisu.cli._settings import database_url, settings
    from sisu.service.backend import Backend

    s = settings()
    b = Backend.from_settings(database_url(s), s, pool_size=2, pooled=False)
    try:
        yield b
    finally:
        b.close()


def database() -> str:
    """The database a command reads, safe to print (no password)."""
    from sisu.cli._settings import settings
    from sisu.db.url import describe

    return describe(settings())


def empty(message: str | None = None) -> None:
    """On stderr, that a read found nothing, and in which database: an empty answer from the
    wrong database (a forgotten SISU_HOME or SISU_DATABASE_URL) is then plain to see. Without
    `message` (the command already said it on stdout), only the database."""
    import sys

    where = f"database: {database()}"
    sys.stderr.write(f"{message} ({where})\n" if message else f"{where}\n")
