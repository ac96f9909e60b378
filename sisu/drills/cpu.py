"""CPU time of the processes a bench phase keeps busy, from `/proc/<pid>/stat` (utime + stime,
in clock ticks): the worker processes, and the PostgreSQL server's processes when the server runs
on this machine.

The server's processes are the postmaster's children, found by their parent pid in /proc: its
backends and its background processes (WAL writer, checkpointer, autovacuum), which do a share of
the work too. A backend that exits during a phase is no longer in /proc, but the postmaster reaps
it and the kernel adds its time to the postmaster's cutime/cstime, which are counted. Sampling
`pg_stat_activity` before and after would miss exactly those short-lived connections.
Backends connected to another database of the same server are left out (the server may be
shared); short-lived ones of another database cannot be told apart and count."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sisu.db.connection import connect

PROC = Path("/proc")


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (which may hold spaces), so that
    index 0 is the state, 1 the ppid, 11 utime, 12 stime, 13 cutime, 14 cstime."""
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()


def _ticks(fields: list[str], *, children: bool = False) -> int:
    own = int(fields[11]) + int(fields[12])
    return own + (int(fields[13]) + int(fields[14]) if children else 0)


def process_ticks(pids: list[int]) -> int:
    """utime + stime of these processes (all their threads); a gone process counts 0."""
    return sum(_ticks(f) for f in map(_stat_fields, pids) if f is not None)


def ticks_to_ms(ticks: int) -> float:
    return ticks * 1000 / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Postmaster:
    """A PostgreSQL server running on this machine, and the database whose work is measured."""

    pid: int
    database: str
    url: str

    def ticks(self) -> int:
        """The postmaster's own time, its reaped children's, and its live children's except
        backends of other databases."""
        others = self._other_databases_backends()
        total = 0
        for entry in PROC.iterdir():
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            if pid == self.pid:
                fields = _stat_fields(pid)
                total += _ticks(fields, children=True) if fields else 0
                continue
            fields = _stat_fields(pid)
            if fields is None or int(fields[1]) != self.pid or pid in others:
                continue
            total += _ticks(fields)
        return total

    def _other_databases_backends(self) -> set[int]:
        with connect(self.url) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname IS NOT NULL AND datname <> %s",
                (self.database,),
            ).fetchall()
        return {int(r["pid"]) for r in rows}


def find_postmaster(url: str, database: str) -> Postmaster | str:
    """The server's postmaster if it runs on this machine (our own backend's parent), else why
    not. A backend pid is only trusted when this machine's process of that pid is a PostgreSQL
    backend of our database: the same number on another machine says nothing."""
    with connect(url) as conn:
        row = conn.execute("SELECT pg_backend_pid() AS pid").fetchone()
        assert row is not None
        backend = int(row["pid"])
        try:
            title = (PROC / str(backend) / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            title = ""
        fields = _stat_fields(backend)
        if fields is None or database not in title:
            return (
                f"the database server is not on this machine (its backend pid {backend} is not "
                "a PostgreSQL process here): its CPU time cannot be read from /proc"
            )
    ppid = int(fields[1])
    if _stat_fields(ppid) is None:
        return f"the postmaster (pid {ppid}) cannot be read in /proc"
    return Postmaster(pid=ppid, database=database, url=url)
