"""Building a run's workspace: a checkout of the intent's commit (or an empty folder), with the
plan's files written over it, and the unified diff between the two. Building is deterministic
and starts from nothing each time, so a re-executed step, or a command run again after a crash,
always sees the same tree."""

from __future__ import annotations

import difflib
import hashlib
import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from sisu.workspace.repos import GitFailed, git

NO_NEWLINE = "\\ No newline at end of file\n"


class WorkspaceError(Exception):
    """The plan cannot be applied as asked (a path that escapes, a binary file); the message
    says which file."""


@dataclass
class Built:
    root: Path
    files: list[dict[str, Any]] = field(default_factory=list)  # {path, sha256}
    diff: str = ""
    insertions: int = 0
    deletions: int = 0

    @property
    def stat(self) -> dict[str, int]:
        changed = sum(1 for f in self.files if f["changed"])
        return {"files": changed, "insertions": self.insertions, "deletions": self.deletions}


def _remove(root: Path) -> None:
    def writable_then_retry(func: Any, path: str, _exc: Any) -> None:
        # A command may leave read-only folders behind; the workspace is ours to remove.
        os.chmod(os.path.dirname(path), stat.S_IRWXU)
        if os.path.isdir(path):
            os.chmod(path, stat.S_IRWXU)
        func(path)

    if root.is_symlink() or root.is_file():
        root.unlink()
    elif root.exists():
        shutil.rmtree(root, onerror=writable_then_retry)


def _checkout(root: Path, repo: str, commit: str) -> None:
    """A local clone (objects hard-linked, so it is cheap and independent of later changes to
    the repository), then the pinned commit, detached. Reads the repository, never writes it."""
    root.parent.mkdir(parents=True, exist_ok=True)
    git("clone", "--quiet", "--no-checkout", "--", repo, str(root), cwd=root.parent)
    git("checkout", "--quiet", "--detach", commit, cwd=root)


def _target(root: Path, relative: str) -> Path:
    """The file a plan path names, which must stay inside the workspace even through the
    repository's own symlinks."""
    rel = PurePosixPath(relative)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts or rel.parts[0] == ".git":
        raise WorkspaceError(f"patch path {relative!r} escapes the workspace")
    path = root.joinpath(*rel.parts)
    if path.is_symlink():
        raise WorkspaceError(f"patch path {relative!r} is a symlink in the repository")
    real_parent = Path(os.path.realpath(path.parent))
    real_root = Path(os.path.realpath(root))
    if real_parent != real_root and real_root not in real_parent.parents:
        raise WorkspaceError(f"patch path {relative!r} leads outside the workspace")
    return path


def _file_diff(path: str, old: bytes | None, new: bytes) -> tuple[str, int, int]:
    """One file's part of a git-style unified diff (what `git apply` takes)."""
    if old is not None:
        try:
            old_text = old.decode()
        except UnicodeDecodeError as exc:
            raise WorkspaceError(f"patch path {path!r} would overwrite a binary file") from exc
    else:
        old_text = ""
    new_text = new.decode()
    header = [f"diff --git a/{path} b/{path}\n"]
    if old is None:
        header.append("new file mode 100644\n")
    lines = list(
        difflib.unified_diff(
            old_text.splitlines(keepends=True),
            new_text.splitlines(keepends=True),
            "/dev/null" if old is None else f"a/{path}",
            f"b/{path}",
        )
    )
    if not lines and old is not None:
        return "", 0, 0
    body: list[str] = []
    added = removed = 0
    for line in lines:
        if line.startswith("+") and not line.startswith("+++"):
            added += 1
        elif line.startswith("-") and not line.startswith("---"):
            removed += 1
        if line.startswith(("---", "+++")):
            body.append(line.rstrip("\n") + "\n")  # difflib's headers end with the lineterm
        elif line.endswith("\n"):
            body.append(line)
        else:
            body.append(line + "\n" + NO_NEWLINE)
    return "".join(header + body), added, removed


def rebuild(
    root: Path, files: list[dict[str, Any]], *, repo: str | None, commit: str | None
) -> Built:
    """Remove whatever `root` holds, check out the commit (or make an empty folder), write the
    plan's files, and return their digests and the diff against the commit."""
    _remove(root)
    if repo is not None and commit is not None:
        try:
            _checkout(root, repo, commit)
        except GitFailed as exc:
            raise WorkspaceError(f"cannot check out {commit[:12]} of {repo}: {exc}") from exc
    else:
        root.mkdir(parents=True)
    built = Built(root=root)
    diffs: list[str] = []
    paths = [str(PurePosixPath(item["path"])) for item in files]
    if len(set(paths)) != len(paths):
        raise WorkspaceError("the plan writes the same path twice")
    for item in files:
        path = _target(root, item["path"])
        new = item["content"].encode()
        old = path.read_bytes() if path.is_file() else None
        if path.exists() and not path.is_file():
            raise WorkspaceError(f"patch path {item['path']!r} is a directory in the repository")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(new)
        diff, added, removed = _file_diff(item["path"], old, new)
        diffs.append(diff)
        built.insertions += added
        built.deletions += removed
        built.files.append(
            {
                "path": item["path"],
                "sha256": hashlib.sha256(new).hexdigest(),
                "changed": old != new,
            }
        )
    built.diff = "".join(diffs)
    return built
