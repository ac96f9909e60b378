"""`sisu policy`: static checks of sisu's own code (workflow purity, shim isolation)."""

from __future__ import annotations

from pathlib import Path

import typer

from sisu.cli import _output

app = typer.Typer(help="Static policy checks on the code.", no_args_is_help=True)


@app.command()
def check(
    path: Path = typer.Argument(
        None, help="Root of the sisu package to check (default: the installed one)."
    ),
    json: bool = _output.json_option("Print violations as JSON."),
) -> None:
    """Check that workflows in workflow/wf/ are pure and that api/ never imports sisu.workflow.

    Prints `file:line: rule: detail` per violation; exits 1 when there is any."""
    from sisu.audit import policy

    _output.use_json(json)
    root = path or Path(__file__).resolve().parents[1]
    violations = policy.check(root)
    if json:
        _output.emit_obj({"ok": not violations, "violations": [v.as_dict() for v in violations]})
    else:
        for v in violations:
            _output.data(str(v))
        _output.info(f"policy: {len(violations)} violation(s)" if violations else "policy: ok")
    if violations:
        raise typer.Exit(1)
