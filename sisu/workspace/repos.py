"""The user's git repository, read and never written: resolving a ref to the commit an intent
pins, and reading files at that commit. Every call is a short local `git` process, run with no
database transaction open."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sisu.errors import ValidationFailed

GIT_TIMEOUT_SECONDS = 30
_SHA = re.compile(r"^[0-9a-f]{40}$")


class GitFailed(Exception):
    """A git command failed; the message is git's own one-line answer."""


def git(*args: str, cwd: Path, input: bytes | None = None) -> bytes:
    """Run git with a clean, predictable environment (no user pager, no prompts, English)."""
    env = {
        **os.environ,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "LC_ALL": "C",
    }
    # `safe.directory=*`: a worker (root) reads repositories other users own.
    cmd = ["git", "-c", "safe.directory=*", "-C", str(cwd), *args]
    try:
        done = subprocess.run(
            cmd, input=input, capture_output=True, env=env, timeout=GIT_TIMEOUT_SECONDS
        )
    except FileNotFoundError as exc:
        raise GitFailed("git is not installed (it is needed for intents with --repo)") from exc
    except subprocess.TimeoutExpired as exc:
        raise GitFailed(f"git {args[0]} took longer than {GIT_TIMEOUT_SECONDS}s") from exc
    if done.returncode != 0:
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        raise GitFailed(lines[-1] if lines else f"git {args[0]} exited {done.returncode}")
    return done.stdout


@dataclass(frozen=True)
class Pinned:
    repo: str  # absolute path of the repository's top level
    ref: str
    commit: str  # the 40-hex sha `ref` resolved to


def pin(repo: str, ref: str | None) -> Pinned:
    """The repository's top level and the commit `ref` (default HEAD) names, or a
    validation_error saying which field is wrong."""
    ref = ref or "HEAD"
    path = Path(repo).expanduser()
    if not path.is_dir():
        raise ValidationFailed(
            f"repo {repo!r} is not a directory",
            details=[{"field": "repo", "type": "not_a_directory", "input": repo}],
        )
    try:
        top = git("rev-parse", "--show-toplevel", cwd=path).decode().strip()
    except GitFailed as exc:
        raise ValidationFailed(
            f"repo {repo!r} is not a git repository with a work tree: {exc}",
            details=[{"field": "repo", "type": "not_a_git_repository", "input": repo}],
        ) from exc
    if ref.startswith("-"):
        raise ValidationFailed(
            f"ref {ref!r} is not a ref", details=[{"field": "ref", "type": "bad_ref", "input": ref}]
        )
    try:
        commit = git("rev-parse", "--verify", "--end-of-options", f"{ref}^{{commit}}", cwd=path)
    except GitFailed as exc:
        raise ValidationFailed(
            f"ref {ref!r} names no commit in {top}: {exc}",
            details=[{"field": "ref", "type": "unknown_ref", "input": ref}],
        ) from exc
    sha = commit.decode().strip()
    assert _SHA.fullmatch(sha), sha
    return Pinned(repo=top, ref=ref, commit=sha)
