"""`sisu serve` as an operator meets it when the port is taken: one error line with the code
`port_in_use` and a non-zero exit, the same as `sisu worker` on a taken admin port — no
announcement first, no uvicorn traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import run_sisu
from tests.support.serve import running_serve


@pytest.mark.parametrize("command", [["serve", "--port"], ["worker", "--admin-port"]])
def test_a_taken_port_is_one_port_in_use_line(
    sisu_env: dict[str, str], tmp_path: Path, command: list[str]
) -> None:
    # A real `sisu serve` holds the port, as a forgotten shim would.
    with running_serve(sisu_env, tmp_path / "logs" / "serve.log") as holder:
        holder.wait_responding()
        result = run_sisu([*command, str(holder.port)], sisu_env, timeout=60)
        assert result.exit_code == 1, (result.stdout, result.stderr)
        assert result.stdout == ""
        [line] = result.stderr.splitlines()
        assert line.startswith("sisu: error[port_in_use]: "), line
        # The shim that holds the port is unharmed.
        assert holder.wait_responding().status_code == 200
