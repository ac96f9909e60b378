"""Which database sisu talks to: `SISU_DATABASE_URL`, else the embedded server of `SISU_HOME`."""

from __future__ import annotations

import re
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


# A URL starts with its scheme; anything else is a key=value conninfo.
_URL = re.compile(r"^\s*[A-Za-z][A-Za-z0-9+.-]*://")
# `password` or `sslpassword` = a quoted value (escapes allowed; unterminated: to the end) or a
# bare word (escapes allowed), with any spaces around `=`.
_KV_PASSWORD = re.compile(r"(?i)\b(\w*password)\s*=\s*('(?:[^'\\]|\\.)*'?|(?:[^\s\\]|\\.)*)")
# In a URL's query: a password runs to the next `&key=` (a raw `&` or `#` stays inside it).
_QUERY_PASSWORD = re.compile(r"(?i)([?&][\w%]*password=).*?(?=&[\w%]+=|$)", re.DOTALL)
_MASK = "***"


def describe(settings: Settings) -> str:
    """Which database the settings name, safe to print: an external URL without its password,
    or the embedded server with the SISU_HOME it belongs to (a forgotten SISU_HOME shows)."""
    if settings.database_url:
        return redact(settings.database_url)
    return f"embedded, SISU_HOME={settings.home}"


def redact(url: str) -> str:
    """The connection string without its password (in a URL's user part, even raw and holding
    `#`, `@`, `/` or `%`; in a `password=` query parameter; in a key=value conninfo, quoted or
    not), safe to print. Never raises: what it cannot read it masks whole."""
    try:
        return _redact_url(url) if _URL.match(url) else _redact_conninfo(url)
    except Exception:
        return _MASK


def _redact_url(url: str) -> str:
    scheme, _, rest = url.partition("://")
    # The user part ends at the last `@` before the query; a raw `?` in a password leaves no
    # `@` before the first `?`, and then the last `@` of all ends it (masking more, never less).
    query_at = rest.find("?")
    at = rest.rfind("@", 0, query_at) if query_at >= 0 else rest.rfind("@")
    if at < 0:
        at = rest.rfind("@")
    if at >= 0 and ":" in rest[:at]:
        rest = f"{rest[:at].split(':', 1)[0]}:{_MASK}{rest[at:]}"
    rest = _QUERY_PASSWORD.sub(lambda m: f"{m.group(1)}{_MASK}", rest)
    return f"{scheme}://{rest}"


def _redact_conninfo(conninfo: str) -> str:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    masked = _KV_PASSWORD.sub(lambda m: f"{m.group(1)}={_MASK}", conninfo)
    try:
        params = conninfo_to_dict(conninfo)
    except Exception:
        return masked  # libpq cannot read it either; the pattern masked every password= it saw
    secret = {k for k in params if k.endswith("password")}
    if any(str(params[k]) in masked for k in secret if params[k]):
        # The pattern missed a form libpq reads: rebuild the string from libpq's reading.
        return make_conninfo("", **{k: _MASK if k in secret else v for k, v in params.items()})
    return masked


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
