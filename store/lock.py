"""The exclusive lock on a data directory: one wabot process per ``data/``."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

import attrs

from store.errors import DataDirLocked


@attrs.define
class DataDirLock:
    """``flock`` on ``<data_dir>/.lock``, non-blocking; the holder's pid is written in it."""

    path: Path
    _fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise DataDirLocked(self.path, holder) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    @property
    def held(self) -> bool:
        return self._fd is not None


def is_locked(path: Path) -> bool:
    """True if another process holds the lock (checked by trying to take it)."""
    lock = DataDirLock(path)
    try:
        lock.acquire()
    except DataDirLocked:
        return True
    lock.release()
    return False


def _read_holder(fd: int) -> str | None:
    try:
        text = os.pread(fd, 64, 0).decode(errors="replace").strip()
    except OSError:
        return None
    return text or None
