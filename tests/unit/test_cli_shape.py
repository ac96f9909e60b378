"""How the CLI package holds together: a command module never borrows from another command
module (what two commands share lives in a `sisu/cli/_*.py` module), and `--json` is defined
once, in `_output`."""

from __future__ import annotations

import ast
from pathlib import Path

import sisu

CLI = Path(sisu.__file__).parent / "cli"
COMMANDS = sorted(p for p in CLI.glob("*.py") if not p.name.startswith("_"))


def _imported_modules(path: Path) -> set[str]:
    """Every sisu.cli.X module the file imports, at any depth of the file."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "sisu.cli":
            found.update(f"sisu.cli.{a.name}" for a in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sisu.cli."):
            found.add(node.module or "")
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("sisu.cli."))
    return found


def test_no_command_module_imports_another() -> None:
    borrowed = {
        f"{p.name}: {m}"
        for p in COMMANDS
        for m in _imported_modules(p)
        if not m.rpartition(".")[2].startswith("_")
    }
    assert len(COMMANDS) > 10  # the walk saw the commands
    assert borrowed == set()


def test_the_walk_sees_a_shared_module_import() -> None:
    # run.py parses its --payload with the shared parser: the check above can see imports.
    assert "sisu.cli._input" in _imported_modules(CLI / "run.py")


def test_json_is_defined_once() -> None:
    spelled = sorted(p.name for p in CLI.glob("*.py") if '"--json"' in p.read_text())
    assert spelled == ["_output.py"]
