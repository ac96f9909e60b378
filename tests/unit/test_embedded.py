"""`sisu.db.embedded`'s guards, without a server: which pid is a live postmaster (a zombie is
not), and where a socket goes when the data directory's path is too long (a private directory,
never one someone else prepared)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sisu.db import embedded
from sisu.errors import EmbeddedServerError


@pytest.fixture
def fake_postgres(tmp_path: Path) -> Path:
    """An executable named `postgres` (what the kernel reports as the process name)."""
    exe = tmp_path / "postgres"
    shutil.copy(shutil.which("sleep") or "/bin/sleep", exe)
    return exe


def _state(pid: int) -> str:
    raw = Path(f"/proc/{pid}/stat").read_text()
    return raw[raw.rfind(")") + 2 :].split(" ", 1)[0]


def test_a_running_postgres_is_a_live_postmaster(fake_postgres: Path) -> None:
    proc = subprocess.Popen([str(fake_postgres), "30"])
    try:
        assert embedded._is_live_postmaster(proc.pid)
    finally:
        proc.kill()
        proc.wait()


def test_a_zombie_postgres_is_not_a_live_postmaster(fake_postgres: Path) -> None:
    proc = subprocess.Popen([str(fake_postgres), "30"])
    proc.kill()
    # Not reaped yet: the pid exists (kill 0 succeeds) but the process is a zombie.
    while _state(proc.pid) != "Z":
        time.sleep(0.01)
    try:
        os.kill(proc.pid, 0)
        assert not embedded._is_live_postmaster(proc.pid)
    finally:
        proc.wait()


def test_another_program_on_a_recycled_pid_is_not_a_live_postmaster() -> None:
    assert not embedded._is_live_postmaster(os.getpid())  # python, not postgres


def test_a_gone_pid_is_not_a_live_postmaster() -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()
    assert not embedded._is_live_postmaster(proc.pid)


@pytest.fixture
def long_pgdata() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="sisu-u-"))
    pgdata = base / ("d" * 120) / "pg"
    try:
        yield pgdata
    finally:
        sock = embedded._fallback_socket_dir(pgdata, embedded._server_ids()[0])
        if sock.is_symlink():
            sock.unlink()
        shutil.rmtree(sock, ignore_errors=True)
        shutil.rmtree(base, ignore_errors=True)


def test_a_long_data_path_puts_the_socket_in_a_private_directory(long_pgdata: Path) -> None:
    sock = embedded._socket_dir(long_pgdata)
    st = os.lstat(sock)
    assert stat.S_ISDIR(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o700
    assert st.st_uid == embedded._server_ids()[0]
    assert len(os.fsencode(sock / ".s.PGSQL.5432")) <= embedded.SOCKET_PATH_MAX
    # Asked again (the next start), the same directory is used.
    assert embedded._socket_dir(long_pgdata) == sock


def test_a_socket_directory_open_to_others_is_refused(long_pgdata: Path) -> None:
    uid, gid = embedded._server_ids()
    squatted = embedded._fallback_socket_dir(long_pgdata, uid)
    squatted.mkdir(mode=0o700)
    os.chown(squatted, uid, gid)
    squatted.chmod(0o777)
    with pytest.raises(EmbeddedServerError):
        embedded._socket_dir(long_pgdata)
    assert stat.S_IMODE(squatted.stat().st_mode) == 0o777  # not adopted, not changed


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a directory another user owns")
def test_a_socket_directory_of_another_user_is_refused(long_pgdata: Path) -> None:
    uid, _ = embedded._server_ids()
    squatted = embedded._fallback_socket_dir(long_pgdata, uid)
    squatted.mkdir(mode=0o700)
    os.chown(squatted, 65534, 65534)  # nobody
    with pytest.raises(EmbeddedServerError):
        embedded._socket_dir(long_pgdata)
    assert squatted.stat().st_uid == 65534


def test_a_symlink_in_place_of_the_socket_directory_is_refused(
    long_pgdata: Path, tmp_path: Path
) -> None:
    uid, _ = embedded._server_ids()
    squatted = embedded._fallback_socket_dir(long_pgdata, uid)
    squatted.symlink_to(tmp_path)
    with pytest.raises(EmbeddedServerError):
        embedded._socket_dir(long_pgdata)
