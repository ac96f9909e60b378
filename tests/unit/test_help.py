"""Every command's help, read from the click command tree (no database): each command says
what it does in one whole sentence where its group lists it, every option's help is a whole
sentence, and a group's --help lists all its subcommands."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from sisu.cli import app

# A help text is whole when it ends like a sentence (or a parenthesis closing one). A colon is
# where the retry help used to stop in `sisu run --help`: the rest was in the next paragraph.
ENDINGS = (".", ")", "!", "?")
ROOT = typer.main.get_command(app)


def subcommands(command: Any) -> dict[str, Any]:
    """A group's commands (typer builds on its own copy of click: no isinstance checks)."""
    return {n: c for n, c in (getattr(command, "commands", None) or {}).items() if not c.hidden}


def commands(command: Any = ROOT, path: tuple[str, ...] = ()) -> Iterator[tuple[str, Any]]:
    yield " ".join(("sisu", *path)), command
    if hasattr(command, "commands"):
        for name, sub in sorted(subcommands(command).items()):
            if not sub.hidden:
                yield from commands(sub, (*path, name))


def first_paragraph(help_text: str) -> str:
    """What a group's command list shows for a command (typer's rich help)."""
    return inspect.cleandoc(help_text).partition("\f")[0].split("\n\n")[0].strip()


ALL = list(commands())


def test_the_tree_is_walked() -> None:
    names = {name for name, _ in ALL}
    assert {"sisu", "sisu run", "sisu run retry", "sisu intent create", "sisu db status"} <= names


@pytest.mark.parametrize(("name", "command"), ALL, ids=[name for name, _ in ALL])
def test_the_command_says_what_it_does_in_whole_sentences(name: str, command: Any) -> None:
    text = first_paragraph(command.help or "")
    assert text, f"{name} has no help"
    assert text.endswith(ENDINGS), f"{name}: its listed help ends mid-sentence: {text!r}"
    # Typer keeps the line breaks of a first paragraph in a group's list of commands.
    assert "\n" not in text, f"{name}: its first paragraph is broken over lines: {text!r}"
    rest = inspect.cleandoc(command.help or "").strip()
    assert rest.endswith(ENDINGS), f"{name}: its help ends mid-sentence: {rest!r}"


@pytest.mark.parametrize(("name", "command"), ALL, ids=[name for name, _ in ALL])
def test_every_option_help_is_a_whole_sentence(name: str, command: Any) -> None:
    unfinished = {
        param.name: help_text
        for param in command.params
        if not getattr(param, "hidden", False)
        and (help_text := (getattr(param, "help", None) or "").strip())
        and not help_text.endswith(ENDINGS)
    }
    missing = [
        param.name
        for param in command.params
        if not getattr(param, "hidden", False) and not (getattr(param, "help", None) or "").strip()
    ]
    assert not unfinished, f"{name}: option help ends mid-sentence: {unfinished}"
    assert not missing, f"{name}: options without help: {missing}"


GROUPS = [(name, command) for name, command in ALL if hasattr(command, "commands")]


@pytest.mark.parametrize(("name", "group"), GROUPS, ids=[name for name, _ in GROUPS])
def test_a_group_help_lists_every_subcommand(name: str, group: Any) -> None:
    result = CliRunner().invoke(app, [*name.split()[1:], "--help"], terminal_width=100)
    assert result.exit_code == 0, result.output
    listed = {
        line.strip("│ ").split()[0]
        for line in result.output.partition("Commands")[2].splitlines()
        if line.startswith("│ ") and line[2] != " "
    }
    expected = set(subcommands(group))
    assert listed == expected
