"""Which database sisu talks to: `SISU_DATABASE_URL`, else the embedded server of `SISU_HOME`."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from sisu.config import Settings
from sisu.db import embedded


def resolve(settings: Settings, *, start: bool = True) -> str | None:
    """The libpq URL of sisu's database. Starts the embedded server on first use unless
    `start` is False, in which case a stopped embedded server gives None."""
    if settings.database_url:
        return settings.database_url
    if start:
        return embedded.start(settings.home).url()
    info = embedded.running_server(settings.home)
    return info.url() if info else None


def redact(url: str) -> str:
    """The URL without its password, safe to print."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username}:***@{host}" if parts.username else host
    return urlunsplit(parts._replace(netloc=netloc))


def sqlalchemy_url(url: str) -> str:
    """The same database as a SQLAlchemy URL on the psycopg 3 driver (what DBOS expects)."""
    scheme, _, rest = url.partition("://")
    if scheme in ("postgres", "postgresql"):
        return f"postgresql+psycopg://{rest}"
    return url
