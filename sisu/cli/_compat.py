"""The private typer API the CLI relies on, apart from sisu.compat so that `sisu --help` never
imports dbos. tests/unit/test_compat.py fails loudly when a typer upgrade moves it, and ruff's
banned-api rule (TID251) keeps `typer._click` out of every other module."""

from __future__ import annotations

import re

# typer >= 0.26 vendors click, so its usage errors are not `click.ClickException`s, and typer
# does not re-export the vendored class.
from typer._click.exceptions import ClickException as UsageProblem
from typer._click.exceptions import NoSuchOption

__all__ = ["NoSuchOption", "UsageProblem", "reflow_help_paragraphs"]

_LIST_ITEM = re.compile(r"\s*(?:[-*]|\d+[.)])\s")


def _reflow(paragraph: str) -> str:
    """One paragraph of a docstring as one line per sentence run: the docstring's own line
    breaks (hard-wrapped at 100 columns) joined, list items and `\\b` paragraphs kept."""
    if paragraph.startswith("\b"):
        return paragraph
    lines = paragraph.split("\n")
    out = [lines[0]]
    for line in lines[1:]:
        if _LIST_ITEM.match(line):
            out.append(line)
        else:
            out[-1] = f"{out[-1].rstrip()} {line.strip()}"
    return "\n".join(out)


def reflow_help_paragraphs() -> None:
    """typer (0.29) joins the lines of a command's first help paragraph but prints the others
    with the docstring's line breaks, which the terminal's own wrapping then cuts mid-line.
    Join them the same way, once, before any help is printed."""
    from typer import rich_utils

    def fix_linebreaks(paragraphs: list[str], markup_mode: str) -> str:
        return "\n\n".join(_reflow(p) for p in paragraphs)

    rich_utils._fix_linebreaks = fix_linebreaks
