"""`sisu.db.url`: a printable URL never shows a password; the SQLAlchemy URL names psycopg 3."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from sisu.config import Settings
from sisu.db.url import describe, redact, sqlalchemy_url

EMBEDDED = "postgresql://postgres@/sisu?host=/tmp/sisu-x/pg&port=5432"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "postgresql://alice:s3cret@db.example.com:5433/sisu",
            "postgresql://alice:***@db.example.com:5433/sisu",
        ),
        (
            "postgresql://alice:s3cret@db.example.com/sisu",
            "postgresql://alice:***@db.example.com/sisu",
        ),
        (
            "postgresql://alice:s3cret@127.0.0.1:5432/sisu?sslmode=require",
            "postgresql://alice:***@127.0.0.1:5432/sisu?sslmode=require",
        ),
        ("postgres://alice:p%40ss@h:1/d", "postgres://alice:***@h:1/d"),
    ],
)
def test_redact_hides_the_password(url: str, expected: str) -> None:
    assert redact(url) == expected
    assert "s3cret" not in redact(url)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres@127.0.0.1:5432/postgres",
        "postgresql://127.0.0.1/x",
        EMBEDDED,
    ],
)
def test_redact_leaves_a_url_without_password_unchanged(url: str) -> None:
    assert redact(url) == url


def test_redact_hides_a_password_in_the_query_string() -> None:
    assert "s3cret" not in redact("postgresql://alice@h:5432/sisu?password=s3cret")


def test_redact_keeps_an_ipv6_host_valid() -> None:
    assert redact("postgresql://alice:s3cret@[::1]:5432/sisu") == (
        "postgresql://alice:***@[::1]:5432/sisu"
    )


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u@h:5432/d", "postgresql+psycopg://u@h:5432/d"),
        ("postgres://u:p@h/d", "postgresql+psycopg://u:p@h/d"),
        ("postgresql+psycopg://u@h/d", "postgresql+psycopg://u@h/d"),
        (EMBEDDED, "postgresql+psycopg://postgres@/sisu?host=/tmp/sisu-x/pg&port=5432"),
    ],
)
def test_sqlalchemy_url_uses_the_psycopg3_driver(url: str, expected: str) -> None:
    assert sqlalchemy_url(url) == expected


def test_sqlalchemy_reads_the_embedded_socket_url() -> None:
    parsed = make_url(sqlalchemy_url(EMBEDDED))
    assert parsed.drivername == "postgresql+psycopg"
    assert parsed.database == "sisu"
    assert parsed.username == "postgres"
    assert dict(parsed.query) == {"host": "/tmp/sisu-x/pg", "port": "5432"}


# --- every form of a DSN (issue 12, item 7) ----------------------------------------------------


@pytest.mark.parametrize(
    ("dsn", "secret"),
    [
        ("host=h password=s3cret user=u", "s3cret"),
        ("host=h password = s3cret user=u", "s3cret"),
        ("host=h password= s3cret", "s3cret"),
        ("host=h PASSWORD =s3cret", "s3cret"),
        ("host=h password='a b c' user=u", "a b c"),
        ("host=h password='s3 cr3t x' user=u", "cr3t"),
        ("host=h password='s3 cr\\'et x' user=u", "cr\\'et"),
        ("host=h password='s3 cr\\'et x' user=u", "et x"),
        ("host=h password=s3cr\\ et user=u", "et"),
        ("host=h sslpassword=s3cret user=u", "s3cret"),
        ("host=h password='unterminated s3cret", "s3cret"),
        ("password=s3cret", "s3cret"),
    ],
)
def test_redact_hides_a_conninfo_password(dsn: str, secret: str) -> None:
    out = redact(dsn)
    assert secret not in out
    assert "***" in out


@pytest.mark.parametrize(
    "dsn",
    ["host=h password = s3cret user=u dbname='my db'", "host=h password='a b c' user=u"],
)
def test_a_redacted_conninfo_still_names_the_server(dsn: str) -> None:
    from psycopg.conninfo import conninfo_to_dict

    out = conninfo_to_dict(redact(dsn))
    assert out["host"] == "h"
    assert out["user"] == "u"
    assert out["password"] == "***"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://alice:pa#ss@h:5432/d", "postgresql://alice:***@h:5432/d"),
        ("postgresql://alice:p@ss@h:5432/d", "postgresql://alice:***@h:5432/d"),
        ("postgresql://alice:pa/ss@h:5432/d", "postgresql://alice:***@h:5432/d"),
        ("postgresql://alice:50%off@h:5432/d", "postgresql://alice:***@h:5432/d"),
        (
            "postgresql://alice:a#b@c/d%e@h/d?sslmode=require",
            "postgresql://alice:***@h/d?sslmode=require",
        ),
        ("postgresql://alice:pa?ss@h/d", "postgresql://alice:***@h/d"),
        (
            "postgresql://alice:s3cret@h/d?application_name=a@b",
            "postgresql://alice:***@h/d?application_name=a@b",
        ),
        (
            "postgresql://alice@h/d?sslmode=require&password=a&b#c&port=1",
            "postgresql://alice@h/d?sslmode=require&password=***&port=1",
        ),
        ("postgresql://alice@h/d?sslpassword=s3cret", "postgresql://alice@h/d?sslpassword=***"),
    ],
)
def test_redact_hides_a_raw_url_password(url: str, expected: str) -> None:
    assert redact(url) == expected


@pytest.mark.parametrize(
    "garbage",
    ["", "   ", "postgresql://", "password", "=", "'", "password='", "\x00password=x", "://:@"],
)
def test_redact_never_raises(garbage: str) -> None:
    out = redact(garbage)
    assert isinstance(out, str)
    assert "password=x" not in out


def test_describe_names_an_external_database_without_its_password(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, database_url="postgresql://alice:s3cret@db:5433/sisu")
    assert describe(settings) == "postgresql://alice:***@db:5433/sisu"


def test_describe_names_the_embedded_database_by_its_home(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", database_url=None)
    assert describe(settings) == f"embedded, SISU_HOME={tmp_path / 'home'}"
