"""A command's output on its way to disk: each stream into its own log file, kept to a cap (a
flood is read and dropped, never written), and the tail of both streams together for a
one-line error."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

# How much of the combined output the tail keeps.
TAIL_BYTES = 4096


@dataclass(frozen=True)
class OutputFile:
    """One stream's log file as it was left when the command finished."""

    path: Path
    sha256: str  # of the file's final bytes, the truncation marker included
    bytes: int
    truncated: bool

    def as_json(self) -> dict[str, Any]:
        return {
            "uri": self.path.as_uri(),
            "sha256": self.sha256,
            "bytes": self.bytes,
            "truncated": self.truncated,
        }


def truncation_marker(kept: int, dropped: int) -> bytes:
    return f"\n[sisu: output truncated: {kept} bytes kept, {dropped} more dropped]\n".encode()


class CappedLog:
    """Writes at most `cap` bytes of a stream to `path` (emptied first); what comes after is
    counted and dropped, and a marker line is appended on close."""

    def __init__(self, path: Path, cap: int) -> None:
        self.path = path
        self._cap = cap
        self._file: BinaryIO = path.open("wb")
        self._written = 0
        self._dropped = 0

    def write(self, data: bytes) -> None:
        room = self._cap - self._written
        if room > 0:
            kept = data[:room]
            self._file.write(kept)
            self._written += len(kept)
            data = data[room:]
        self._dropped += len(data)

    def close(self) -> OutputFile:
        if self._dropped:
            self._file.write(truncation_marker(self._written, self._dropped))
        self._file.close()
        # Hashed from the file itself, so the digest is of exactly what an operator will read.
        digest = hashlib.sha256()
        size = 0
        with self.path.open("rb") as written:
            while chunk := written.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
        return OutputFile(self.path, digest.hexdigest(), size, self._dropped > 0)

    def abandon(self) -> None:
        self._file.close()


class Tail:
    """The last TAIL_BYTES of everything both streams said, dropped bytes included: the end of
    a flood is usually where its error is."""

    def __init__(self, size: int = TAIL_BYTES) -> None:
        self._size = size
        self._buffer = bytearray()

    def add(self, data: bytes) -> None:
        self._buffer += data[-self._size :]
        del self._buffer[: -self._size]

    def text(self) -> str:
        return self._buffer.decode("utf-8", errors="replace")
