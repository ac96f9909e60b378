"""Process-level settings the steps need (set by the worker at start): where workspaces live,
which compiler and executor implement the ports."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sisu.workflow.steps.ports import Compiler, Executor


@dataclass
class Runtime:
    workspaces: Path
    compiler: Compiler
    executor: Executor


_runtime: Runtime | None = None


def configure(home: Path, url: str, *, step_slots: int) -> None:
    from sisu.workflow.steps.compiler import BuiltinCompiler
    from sisu.workflow.steps.executor import MockOutsideSystem

    global _runtime
    _runtime = Runtime(
        workspaces=home / "workspaces",
        compiler=BuiltinCompiler(),
        executor=MockOutsideSystem(url, pool_size=step_slots),
    )


def get() -> Runtime:
    if _runtime is None:
        raise RuntimeError(
            "step runtime not configured: call sisu.workflow.steps.runtime.configure"
        )
    return _runtime
