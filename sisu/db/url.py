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
    """The connection string without its password (in the user part, in a `password=` query
    parameter, or in a key=value conninfo), safe to print."""
    if "://" not in url:
        return " ".join(
            "password=***" if word.lower().startswith("password=") else word for word in url.split()
        )
    parts = urlsplit(url)
    netloc = parts.netloc
    userinfo, at, hostport = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.split(':', 1)[0]}:***@{hostport}"
    query = (
        "&".join(
            "password=***" if pair.lower().startswith("password=") else pair
            for pair in parts.query.split("&")
        )
        if parts.query
        else parts.query
    )
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def sqlalchemy_url(url: str) -> str:
    """The same database as a SQLAlchemy URL on the psycopg 3 driver (what DBOS expects)."""
    scheme, _, rest = url.partition("://")
    if scheme in ("postgres", "postgresql"):
        return f"postgresql+psycopg://{rest}"
    return url


def with_database(url: str, name: str) -> str:
    """The same server, another database."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))
