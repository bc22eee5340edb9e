"""The seam between the store and the file system, so tests can inject faults.

Every file operation whose failure matters for durability goes through a ``FileIO``: opening
the journal, writing, fsync, truncation, renames and directory fsyncs. Reads do not (a read
failure surfaces as an ordinary exception at load time). Tests subclass ``FileIO`` to raise
``EIO``/``ENOSPC``, to write short, or to simulate a power cut that forgets un-fsynced data.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


class FileIO:
    """Thin wrappers over ``os``; methods are called from worker threads."""

    def open_append(self, path: Path) -> int:
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)

    def open_new(self, path: Path) -> int:
        """Create (or truncate) ``path`` for writing."""
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)

    def write(self, fd: int, data: bytes | memoryview) -> int:
        return os.write(fd, data)

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def truncate(self, fd: int, length: int) -> None:
        os.ftruncate(fd, length)

    def close(self, fd: int) -> None:
        os.close(fd)

    def replace(self, src: Path, dst: Path) -> None:
        os.replace(src, dst)

    def unlink(self, path: Path) -> None:
        os.unlink(path)

    def fsync_dir(self, path: Path) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # Helpers built on the primitives above (so faults injected there apply here too).

    def write_all(self, fd: int, data: bytes) -> None:
        """Write every byte or raise; a short write followed by an error leaves a prefix."""
        view = memoryview(data)
        while view:
            written = self.write(fd, view)
            if written <= 0:
                raise OSError(5, "write returned 0 bytes")
            view = view[written:]

    def unlink_quietly(self, path: Path) -> None:
        with contextlib.suppress(OSError):
            self.unlink(path)
