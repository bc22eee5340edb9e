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
from collections.abc import Iterator
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
    scan = JournalScan.open(path, backup)
    for _line in scan:
        pass
    return scan.result()


@attrs.define(eq=False)
class JournalScan:
    """A journal file read into memory and parsed line by line as it is iterated.

    ``entries`` (the lines that may hold an entry) is known before parsing, so a caller that
    applies each line as it comes can report how far it is. Iterate once, to the end, then
    ``result`` is the ``JournalRead`` that ``read_journal`` returns; damage before the tail
    raises ``StoreCorrupt`` from the iteration.
    """

    path: Path
    backup: Path | None
    data: bytes
    raw_lines: list[bytes]
    lines: list[JournalLine] = attrs.Factory(list)
    good_bytes: int = 0
    torn_line: int | None = None
    finished: bool = False

    @classmethod
    def open(cls, path: Path, backup: Path | None = None) -> JournalScan:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            data = b""
        return cls(path, backup, data, data.split(b"\n"))

    @property
    def entries(self) -> int:
        """Lines that may hold an entry (the final one only if it is not empty)."""
        return len(self.raw_lines) - (0 if self.raw_lines[-1].strip(b"\x00") else 1)

    def __iter__(self) -> Iterator[JournalLine]:
        path, raw_lines = self.path, self.raw_lines
        offset = 0
        last_index = len(raw_lines) - 1
        for index, raw in enumerate(raw_lines):
            line_no = index + 1
            if index == last_index:
                # After the final newline: empty if the file ends cleanly, else a torn write.
                if raw.strip(b"\x00"):
                    log.warning(
                        "%s: dropping torn final line %d (%d bytes)", path, line_no, len(raw)
                    )
                    self.torn_line = line_no
                break
            try:
                parsed = json.loads(raw)
                if not isinstance(parsed, dict) or not isinstance(parsed.get("seq"), int):
                    raise ValueError("not an object with an integer seq")
            except ValueError as exc:
                if not any(rest.strip(b"\x00") for rest in raw_lines[index + 1 :]):
                    log.warning("%s: dropping torn final line %d: %s", path, line_no, exc)
                    self.torn_line = line_no
                    break
                raise StoreCorrupt(
                    path, f"unreadable journal line ({exc})", line_no, self.backup
                ) from exc
            seq = parsed.pop("seq")
            line = JournalLine(seq, parsed, line_no)
            self.lines.append(line)
            offset += len(raw) + 1
            self.good_bytes = offset
            yield line
        self.finished = True

    def result(self) -> JournalRead:
        assert self.finished, "iterate the scan to its end first"
        total = len(self.data)
        if self.torn_line is None:
            return JournalRead(self.path, self.lines, self.good_bytes, total)
        return JournalRead(self.path, self.lines, self.good_bytes, total, self.torn_line)


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
