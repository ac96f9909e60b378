"""Shell completion (issue 16, item 5): the installed `sisu` prints a completion script for bash,
zsh and fish, and the bash one, sourced into a real bash, completes commands and options."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.cli import SISU, run_sisu

SCRIPT_MARKS = {
    "bash": ["_sisu_completion()", "complete -o default -F _sisu_completion sisu"],
    "zsh": ["#compdef sisu", "compdef _sisu_completion sisu"],
    "fish": ["complete --command sisu", "_SISU_COMPLETE=complete_fish"],
}


def env() -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SISU_", "DBOS__"))}
    # The completion scripts call `sisu` by name.
    clean["PATH"] = f"{Path(SISU).parent}{os.pathsep}{clean.get('PATH', '')}"
    clean["NO_COLOR"] = "1"
    return clean


@pytest.mark.parametrize("shell", sorted(SCRIPT_MARKS))
def test_sisu_prints_a_completion_script(shell: str) -> None:
    result = run_sisu([], {**env(), "_SISU_COMPLETE": f"source_{shell}"}, timeout=60)
    assert result.exit_code == 0, result
    for mark in SCRIPT_MARKS[shell]:
        assert mark in result.stdout, (mark, result.stdout)


def test_help_offers_install_and_show_completion() -> None:
    result = run_sisu(["--help"], {**env(), "COLUMNS": "200"}, timeout=60)
    assert result.exit_code == 0, result
    assert "--install-completion" in result.stdout
    assert "--show-completion" in result.stdout


def complete_in_bash(*words: str) -> list[str]:
    """What bash offers after `words` (the last one being typed), with sisu's script sourced."""
    script = (
        'source <(_SISU_COMPLETE=source_bash sisu) && COMP_WORDS=("$@") && '
        'COMP_CWORD=$(( $# - 1 )) && _sisu_completion sisu && printf "%s\\n" "${COMPREPLY[@]}"'
    )
    bash = shutil.which("bash")
    assert bash is not None
    proc = subprocess.run(
        [bash, "-c", script, "bash", *words],
        env=env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_bash_completes_commands_and_options() -> None:
    assert complete_in_bash("sisu", "ru") == ["run"]
    assert "retry" in complete_in_bash("sisu", "run", "")
    assert complete_in_bash("sisu", "worker", "--log-f") == ["--log-format"]
