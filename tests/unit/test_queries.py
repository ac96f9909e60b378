"""`sql/queries.sql`: every query parses under a unique name, and every name sisu asks for
exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import sisu
from sisu.db import queries
from sisu.db.resources import sql_dir

HEADER = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


def queries_text() -> str:
    return (sql_dir() / "queries.sql").read_text()


def test_the_file_parses_and_every_header_gives_one_query() -> None:
    text = queries_text()
    parsed = queries.parse(text)
    headers = HEADER.findall(text)
    assert headers, "queries.sql holds no `-- name:` header"
    assert len(headers) == len(set(headers)), "a query name is defined twice"
    assert sorted(parsed) == sorted(headers)


def test_every_query_has_a_body_without_a_trailing_semicolon() -> None:
    for name, body in queries.all_queries().items():
        assert body.strip(), name
        assert not body.rstrip().endswith(";"), name
        # One statement per name: psycopg runs each with parameters (extended protocol).
        code = "\n".join(ln for ln in body.splitlines() if not ln.lstrip().startswith("--"))
        assert ";" not in code, name


def test_q_returns_the_named_query_and_rejects_unknown_names() -> None:
    assert queries.q("insert_mark") == queries.all_queries()["insert_mark"]
    assert "app.marks" in queries.q("insert_mark")
    with pytest.raises(KeyError):
        queries.q("no_such_query")


def test_parse_rejects_a_duplicate_name() -> None:
    text = "-- name: a\nSELECT 1;\n\n-- name: b\nSELECT 2;\n\n-- name: a\nSELECT 3;\n"
    with pytest.raises(ValueError, match="'a'"):
        queries.parse(text)


def test_parse_keeps_bodies_apart_and_ignores_the_preamble() -> None:
    text = (
        "-- Named queries.\n\n"
        "-- name: one\nSELECT 1\nFROM t;\n\n"
        "-- name: two\nUPDATE t SET x = %(x)s;\n"
    )
    assert queries.parse(text) == {"one": "SELECT 1\nFROM t", "two": "UPDATE t SET x = %(x)s"}


def _names_used_in_sisu() -> set[str]:
    """Every literal name passed to `q(...)` anywhere in the sisu package."""
    used: set[str] = set()
    for path in Path(sisu.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "q"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                used.add(node.args[0].value)
    return used


def test_every_query_name_the_code_uses_is_defined() -> None:
    used = _names_used_in_sisu()
    assert "insert_mark" in used  # the walk found the calls at all
    assert used - set(queries.all_queries()) == set()


def test_parse_leaves_a_section_heading_out_of_the_query_before_it() -> None:
    text = (
        "-- name: one\nSELECT 1;\n\n-- ====\n-- Section two\n-- ====\n\n-- name: two\nSELECT 2;\n"
    )
    assert queries.parse(text) == {"one": "SELECT 1", "two": "SELECT 2"}


def _sisu_sources() -> dict[Path, str]:
    return {p: p.read_text() for p in Path(sisu.__file__).parent.rglob("*.py")}


def test_no_query_name_is_built_at_run_time() -> None:
    # A search for a query's name must find its caller: `q(f"audit_{x}")` hides it.
    built = [
        f"{path.name}:{node.lineno}"
        for path, text in _sisu_sources().items()
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "q"
        and node.args
        and isinstance(node.args[0], ast.JoinedStr | ast.BinOp)
    ]
    assert built == []


def test_every_query_is_used_somewhere_in_sisu() -> None:
    sources = "\n".join(_sisu_sources().values())
    unused = [
        name
        for name in queries.all_queries()
        if f'"{name}"' not in sources and f"'{name}'" not in sources
    ]
    assert unused == []


def test_every_query_says_what_it_answers_on_the_line_after_its_header() -> None:
    lines = queries_text().splitlines()
    undescribed = [
        HEADER.match(line).group(1)  # type: ignore[union-attr]
        for line, after in zip(lines, [*lines[1:], ""], strict=True)
        if HEADER.match(line) and not re.match(r"^-- \S", after)
    ]
    assert undescribed == []


def test_the_file_is_grouped_in_sections() -> None:
    sections = re.findall(r"^-- =+\n-- (.+)\n-- =+$", queries_text(), re.MULTILINE)
    owners = [s.split(":")[0] for s in sections]
    for owner in ("Worker", "Run-loop steps", "Service reads", "Audit", "Doctor", "gc", "Drills"):
        assert owner in owners, owner
    # Every query sits under a section heading.
    first_header = HEADER.search(queries_text())
    first_section = re.search(r"^-- =+$", queries_text(), re.MULTILINE)
    assert first_header is not None and first_section is not None
    assert first_section.start() < first_header.start()


def test_every_audit_check_names_a_defined_query() -> None:
    from sisu.audit import oracles

    checks = [query for _, query, _ in oracles.CHECKS]
    assert set(checks) <= set(queries.all_queries())
    assert len(checks) == len(set(checks))
