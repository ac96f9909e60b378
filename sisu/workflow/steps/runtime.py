"""Process-level settings the steps need (set by the worker at start): where workspaces live,
which compiler and executor implement the ports."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sisu.workflow.steps.ports import Compiler, Executor, OutsideExecutor


@dataclass
class Runtime:
    workspaces: Path
    logs: Path  # a command's output files, per run
    compiler: Compiler
    executor: Executor | OutsideExecutor
    # Worker-wide caps on a run's model budget, for a run whose constraints set none.
    cap_model_requests: int = 50
    cap_tokens: int = 500_000


_runtime: Runtime | None = None


def configure(
    home: Path,
    url: str,
    *,
    step_slots: int,
    compiler: Compiler | None = None,
    executor: OutsideExecutor | None = None,
    cap_model_requests: int = 50,
    cap_tokens: int = 500_000,
) -> None:
    from sisu.config import run_logs_dir
    from sisu.workflow.steps.compiler import BuiltinCompiler
    from sisu.workflow.steps.executor import MockOutsideSystem

    global _runtime
    _runtime = Runtime(
        workspaces=home / "workspaces",
        logs=run_logs_dir(home),
        compiler=compiler or BuiltinCompiler(),
        executor=executor or MockOutsideSystem(url, pool_size=step_slots),
        cap_model_requests=cap_model_requests,
        cap_tokens=cap_tokens,
    )


def get() -> Runtime:
    if _runtime is None:
        raise RuntimeError(
            "step runtime not configured: call sisu.workflow.steps.runtime.configure"
        )
    return _runtime
