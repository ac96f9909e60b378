"""Static policy (Law 4, Law 3): workflows in `workflow/wf/` are control flow only — no clock,
randomness, ids, environment, files, sockets, subprocesses, HTTP or database — and `api/` never
imports `sisu.workflow`. An AST walk, so nothing is imported or run."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

# Top-level modules a pure workflow may not import, with the reason an operator will read.
FORBIDDEN_MODULES: dict[str, str] = {
    "time": "clock",
    "datetime": "clock",
    "calendar": "clock",
    "random": "randomness",
    "secrets": "randomness",
    "uuid": "id generation",
    "os": "environment and files",
    "sys": "environment",
    "pathlib": "files",
    "io": "files",
    "shutil": "files",
    "tempfile": "files",
    "glob": "files",
    "socket": "sockets",
    "ssl": "sockets",
    "subprocess": "subprocesses",
    "multiprocessing": "subprocesses",
    "threading": "threads",
    "asyncio": "event loop and clock",
    "http": "HTTP",
    "urllib": "HTTP",
    "requests": "HTTP",
    "httpx": "HTTP",
    "aiohttp": "HTTP",
    "psycopg": "database",
    "psycopg2": "database",
    "sqlalchemy": "database",
    "sqlite3": "database",
    "sisu.db": "database",
    "sisu.config": "environment",
}
FORBIDDEN_CALLS = {
    "open": "files",
    "input": "terminal input",
    "exec": "dynamic code",
    "eval": "dynamic code",
    "__import__": "dynamic imports",
    "getattr": "dynamic lookups hide impure calls",
}


@dataclass(frozen=True)
class Violation:
    file: str
    line: int
    rule: str
    detail: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.rule}: {self.detail}"

    def as_dict(self) -> dict[str, object]:
        return {"file": self.file, "line": self.line, "rule": self.rule, "detail": self.detail}


def _imported_modules(node: ast.AST, package: str) -> list[str]:
    """Absolute names of the modules an import statement brings in."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        if node.level:  # relative: resolve against the file's package
            parts = package.split(".")
            base = parts[: len(parts) - node.level + 1]
            mod = ".".join([*base, node.module] if node.module else base)
        else:
            mod = node.module or ""
        return [mod, *(f"{mod}.{alias.name}" for alias in node.names)]
    return []


def _matches(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _package_of(path: Path, root: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    return ".".join(["sisu", *rel.parts[:-1]])


def check_workflow_file(path: Path, root: Path, shown: str) -> list[Violation]:
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _package_of(path, root)
    found: list[Violation] = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        for module in _imported_modules(node, package):
            for prefix, reason in FORBIDDEN_MODULES.items():
                if _matches(module, prefix):
                    found.append(Violation(shown, line, "wf-impure-import", f"{module} ({reason})"))
                    break
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in FORBIDDEN_CALLS
        ):
            found.append(
                Violation(
                    shown,
                    node.lineno,
                    "wf-impure-call",
                    f"{node.func.id}() ({FORBIDDEN_CALLS[node.func.id]})",
                )
            )
    # One finding per line and rule is enough to act on.
    unique: dict[tuple[int, str], Violation] = {}
    for v in found:
        unique.setdefault((v.line, v.rule), v)
    return sorted(unique.values(), key=lambda v: v.line)


def check_api_file(path: Path, root: Path, shown: str) -> list[Violation]:
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _package_of(path, root)
    found = []
    for node in ast.walk(tree):
        modules = _imported_modules(node, package)
        if any(_matches(m, "sisu.workflow") for m in modules):
            found.append(
                Violation(
                    shown,
                    getattr(node, "lineno", 0),
                    "api-imports-workflow",
                    f"{modules[0]} (the api-shim never executes workflow code)",
                )
            )
    return found


def check(root: Path) -> list[Violation]:
    """Every violation under the sisu package directory `root`."""
    violations: list[Violation] = []
    for sub, checker in (("workflow/wf", check_workflow_file), ("api", check_api_file)):
        for path in sorted((root / sub).rglob("*.py")):
            shown = str(path.relative_to(root.parent)) if root.parent != root else str(path)
            try:
                violations.extend(checker(path, root, shown))
            except SyntaxError as exc:
                violations.append(Violation(shown, exc.lineno or 0, "syntax-error", str(exc.msg)))
    return violations
