"""Loading settings and the database URL for a command (imports deferred to call time)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sisu.config import Settings


def settings() -> Settings:
    from sisu.config import load_settings

    return load_settings()


def database_url(s: Settings | None = None, *, migrate: bool = True) -> str:
    """The database URL, starting the embedded server on first use and, unless told otherwise,
    bringing the schemas up to date."""
    from sisu.db import migrations
    from sisu.db.url import resolve

    url = resolve(s or settings(), start=True)
    assert url is not None
    if migrate:
        migrations.ensure(url)
    return url
