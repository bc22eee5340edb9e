"""The journal: one JSON object per line, each with a monotonically increasing ``seq``.

Lines are appended by the store's commit loop with one write and one fsync per batch (group
commit). On load, a torn final line (a crash in the middle of a write) is dropped and logged;
anything else that does not parse is corruption and start refuses.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import attrs

from store.errors import StoreCorrupt
from store.fileio import FileIO

log = logging.getLogger("store.journal")


def frame(seq: int, body: bytes) -> bytes:
    """Turn an encoded op ``{"op":...}`` into a journal line with its seq."""
    return b'{"seq":%d,%s\n' % (seq, body[1:])


@attrs.frozen
class JournalLine:
    seq: int
    op: dict[str, Any]
    line_no: int


@attrs.frozen
class JournalRead:
    path: Path
    lines: list[JournalLine]
    #: Byte length of the valid prefix (where a torn tail starts).
    good_bytes: int
    #: Size of the file as read.
    total_bytes: int
    torn_line: int | None = None

    @property
    def torn(self) -> bool:
        return self.good_bytes != self.total_bytes


def read_journal(path: Path, backup: Path | None = None) -> JournalRead:
    """Parse ``path`` (missing = empty). Raises ``StoreCorrupt`` for damage before the tail."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return JournalRead(path, [], 0, 0)
    raw_lines = data.split(b"\n")
    lines: list[JournalLine] = []
    offset = 0
    good = 0
    last_index = len(raw_lines) - 1
    for index, raw in enumerate(raw_lines):
        line_no = index + 1
        if index == last_index:
            # After the final newline: empty if the file ends cleanly, else a torn write.
            if raw.strip(b"\x00"):
                log.warning("%s: dropping torn final line %d (%d bytes)", path, line_no, len(raw))
                return JournalRead(path, lines, good, len(data), line_no)
            break
        try:
            parsed = json.loads(raw)
            if not isinstance(parsed, dict) or not isinstance(parsed.get("seq"), int):
                raise ValueError("not an object with an integer seq")
        except ValueError as exc:
            if not any(rest.strip(b"\x00") for rest in raw_lines[index + 1 :]):
                log.warning("%s: dropping torn final line %d: %s", path, line_no, exc)
                return JournalRead(path, lines, good, len(data), line_no)
            raise StoreCorrupt(path, f"unreadable journal line ({exc})", line_no, backup) from exc
        seq = parsed.pop("seq")
        lines.append(JournalLine(seq, parsed, line_no))
        offset += len(raw) + 1
        good = offset
    return JournalRead(path, lines, good, len(data))


@attrs.define(eq=False)
class JournalWriter:
    """The open journal file; ``append`` runs in a worker thread."""

    io: FileIO
    path: Path
    fd: int
    size: int

    @classmethod
    def open(cls, io: FileIO, path: Path) -> JournalWriter:
        fd = io.open_append(path)
        return cls(io, path, fd, os.fstat(fd).st_size)

    def append(self, data: bytes) -> float:
        """Write and fsync ``data``; return the seconds that took.

        On failure the fd must not be used again (fsyncgate).
        """
        started = time.perf_counter()
        try:
            self.io.write_all(self.fd, data)
            self.io.fsync(self.fd)
        except OSError:
            # Best effort: do not leave a torn line for a later writer to append after.
            with contextlib.suppress(OSError):
                self.io.truncate(self.fd, self.size)
            raise
        self.size += len(data)
        return time.perf_counter() - started

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.io.close(self.fd)
