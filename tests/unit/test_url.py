"""`sisu.db.url`: a printable URL never shows a password; the SQLAlchemy URL names psycopg 3."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from sisu.db.url import redact, sqlalchemy_url

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
