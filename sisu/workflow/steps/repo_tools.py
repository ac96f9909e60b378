"""The llm compiler's read-only view of the intent's repository: `list_files` and `read_file`
read git's object store at the intent's commit (never a checkout: the repository is never
written, its working tree never read), confined to that commit's tree and size-capped. Each
tool call is a DBOS step of the run's workflow, like each model request."""

from __future__ import annotations

import codecs
import os
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Protocol

# Tool signatures are read at run time (pydantic-ai builds their schemas from them), so
# RunContext is imported here; this module is imported only by the llm compiler.
from pydantic_ai import RunContext
from pydantic_ai.toolsets import AbstractToolset, FunctionToolset

from sisu.workflow.steps.errors import StepError

MAX_ENTRIES = 1000
MAX_FILE_BYTES = 64 * 1024
GIT_TIMEOUT_SECONDS = 30
# git's own test for a binary file: a NUL byte in the first 8000 bytes.
BINARY_PROBE_BYTES = 8000
_SHA = re.compile(r"^[0-9a-f]{40}$")
TOOL_NAMES = ("list_files", "read_file")


class PathRefused(ValueError):
    """A path the tools do not read: absolute, with `..`, or otherwise not inside the tree."""


def clean_path(path: str) -> str:
    """`path` relative to the repository's root, normalised ("" for the root), or PathRefused.
    Only the commit's tree is ever read, so the check is on the name alone: no absolute path,
    no `..`, nothing git would take for an option or a revision."""
    if not isinstance(path, str) or "\x00" in path or "\\" in path:
        raise PathRefused(f"{path!r} is not a path inside the repository")
    if path.startswith("/"):
        raise PathRefused(f"{path!r} is absolute: give a path relative to the repository's root")
    parts = [p for p in PurePosixPath(path).parts if p != "."]
    if ".." in parts:
        raise PathRefused(f"{path!r} leaves the repository: `..` is not allowed")
    cleaned = "/".join(parts)
    if cleaned.startswith(("-", ":")):
        raise PathRefused(f"{path!r} is not a path inside the repository")
    return cleaned


class RepoReader(Protocol):
    """What the tools call: the repository at its commit, or (replay) a recording of it."""

    def list_files(self, path: str) -> dict[str, Any]: ...

    def read_file(self, path: str) -> dict[str, Any]: ...


@dataclass(frozen=True)
class RepoAt:
    """A git repository at one commit, read from its object store."""

    repo: str  # absolute path of the repository
    commit: str  # 40 hex digits

    def _git(self, *args: str) -> bytes:
        done = subprocess.run(
            ["git", "-C", self.repo, *args],
            env=_git_env(),
            capture_output=True,
            timeout=GIT_TIMEOUT_SECONDS,
            check=False,
        )
        if done.returncode != 0:
            raise StepError(
                f"git {args[0]} in {self.repo} at {self.commit[:12]} failed: "
                f"{done.stderr.decode(errors='replace').strip()[:300]}"
            )
        return done.stdout

    def _entries(self, path: str, *, recursive: bool) -> list[dict[str, Any]]:
        args = ["ls-tree", "-l", "-z", "--full-tree"]
        if recursive:
            args.append("-r")
        out = self._git(*args, self.commit, "--", path) if path else self._git(*args, self.commit)
        entries = []
        for record in out.split(b"\x00"):
            if not record:
                continue
            meta, _, name = record.partition(b"\t")
            mode, kind, oid, size = meta.decode().split()
            entries.append(
                {
                    "path": name.decode(errors="replace"),
                    "type": {"blob": "file", "tree": "dir", "commit": "submodule"}.get(kind, kind),
                    "mode": mode,
                    "oid": oid,
                    "size": int(size) if size.isdigit() else None,
                }
            )
        return entries

    def list_files(self, path: str = "") -> dict[str, Any]:
        try:
            where = clean_path(path)
        except PathRefused as exc:
            return {"error": "path_refused", "message": str(exc), "path": path}
        entries = self._entries(where, recursive=True)
        # `ls-tree -- a` also matches the file `a` itself; a name that matches nothing is absent.
        if where and not entries:
            return {"error": "not_found", "message": f"no {where!r} at this commit", "path": path}
        listed = [
            {"path": e["path"], "size": e["size"]}
            if e["type"] == "file"
            else {"path": e["path"], "type": e["type"]}
            for e in entries[:MAX_ENTRIES]
        ]
        result: dict[str, Any] = {"path": where, "files": listed}
        if len(entries) > MAX_ENTRIES:
            result["truncated"] = (
                f"{len(entries)} entries, the first {MAX_ENTRIES} shown: list a narrower path"
            )
        return result

    def read_file(self, path: str) -> dict[str, Any]:
        try:
            where = clean_path(path)
        except PathRefused as exc:
            return {"error": "path_refused", "message": str(exc), "path": path}
        if not where:
            return {"error": "is_a_directory", "message": "give a file's path", "path": path}
        found = [e for e in self._entries(where, recursive=False) if e["path"] == where]
        if not found:
            return {"error": "not_found", "message": f"no {where!r} at this commit", "path": path}
        [entry] = found
        if entry["type"] != "file":
            return {
                "error": "is_a_directory",
                "message": f"{where!r} is a {entry['type']}: use list_files",
                "path": path,
            }
        data = self._blob_head(entry["oid"], MAX_FILE_BYTES)
        size = entry["size"]
        if b"\x00" in data[:BINARY_PROBE_BYTES]:
            return {"path": where, "size": size, "binary": True}
        truncated = size is not None and size > len(data)
        try:
            # A cut may fall inside a character: decode what is whole.
            text = codecs.getincrementaldecoder("utf-8")().decode(data, final=not truncated)
        except UnicodeDecodeError:
            return {"path": where, "size": size, "binary": True}
        result: dict[str, Any] = {"path": where, "size": size, "content": text}
        if truncated:
            result["truncated"] = f"the first {len(data)} of {size} bytes"
        return result

    def _blob_head(self, oid: str, limit: int) -> bytes:
        """The first `limit` bytes of a blob, without reading a large one whole."""
        with subprocess.Popen(
            ["git", "-C", self.repo, "cat-file", "blob", oid],
            env=_git_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        ) as proc:
            assert proc.stdout is not None
            data = proc.stdout.read(limit)
            proc.kill()
        return data


def _git_env() -> dict[str, str]:
    """The worker's environment without GIT_* (a GIT_DIR would point git elsewhere), with
    paths taken literally (no glob in a name the model gives)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env["GIT_LITERAL_PATHSPECS"] = "1"
    return env


def repo_for(request: dict[str, Any]) -> RepoAt | None:
    """The repository the compile request names, at its commit; None without one."""
    repo, commit = request.get("repo"), request.get("commit")
    if not repo:
        return None
    if not isinstance(commit, str) or not _SHA.match(commit):
        # Fail closed: a model that cannot see the repository would plan blind.
        raise StepError(f"the intent's repository {repo} has no resolved commit ({commit!r})")
    return RepoAt(repo=str(repo), commit=commit)


def _step_name(agent_name: str, tool: str) -> str:
    # Persisted with every in-flight run, like the model request's: never rename.
    return f"{agent_name}__repo.{tool}"


async def _as_step(name: str, call: Callable[[str], dict[str, Any]], path: str) -> dict[str, Any]:
    """`call(path)` as a DBOS step of the running workflow: its result is checkpointed, so a
    recovered run gets the recorded answer and a replayed workflow asks git nothing. Outside
    a workflow (a test's agent) it is a plain call."""
    from dbos import DBOS

    if DBOS.workflow_id is None:
        return call(path)
    result: dict[str, Any] = await DBOS.run_step_async({"name": name}, call, path)
    return result


def repo_toolset(agent_name: str) -> AbstractToolset[RepoReader | None]:
    """`list_files` and `read_file` over the run's repository (the agent's deps), offered to
    the model only when the run has one."""

    async def list_files(ctx: RunContext[RepoReader | None], path: str = "") -> dict[str, Any]:
        """List the files of the repository the change is for, at the intent's commit, under
        `path` (a directory relative to the repository's root; "" for all), recursively: each
        file's path and size in bytes. At most 1000 entries."""
        assert ctx.deps is not None
        return await _as_step(_step_name(agent_name, "list_files"), ctx.deps.list_files, path)

    async def read_file(ctx: RunContext[RepoReader | None], path: str) -> dict[str, Any]:
        """Read one file of the repository the change is for, at the intent's commit (`path`
        relative to the repository's root). Text only, at most 64 KiB; a longer file is cut
        and says so, a binary file is reported as binary."""
        assert ctx.deps is not None
        return await _as_step(_step_name(agent_name, "read_file"), ctx.deps.read_file, path)

    tools: FunctionToolset[RepoReader | None] = FunctionToolset([list_files, read_file])
    return tools.filtered(lambda ctx, _tool: ctx.deps is not None)
