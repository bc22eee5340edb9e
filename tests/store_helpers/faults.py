"""A ``FileIO`` that injects faults, and one that can simulate a power cut.

``FaultyIO.arm(Fault(...))`` makes the next matching operation fail with an errno (EIO,
ENOSPC), or makes a write short (half the bytes land, the next write fails with ENOSPC).

``PowerCutIO`` remembers, per inode, the content at its last fsync and, per directory, the
names at its last directory fsync. ``power_cut()`` rewrites the directory to that durable
view: un-fsynced appends are lost (optionally keeping a random torn prefix), files created or
renamed without a directory fsync disappear or revert. It models LazyFS's
"lose un-fsynced writes" closely enough for the store's protocol.
"""

from __future__ import annotations

import errno
import os
import random
import threading
from pathlib import Path

import attrs

from store.fileio import FileIO


@attrs.define
class Fault:
    op: str  # "write", "fsync", "replace", "open", "fsync_dir", "truncate", "unlink"
    err: int = errno.EIO
    #: Only files whose name contains this string.
    match: str = ""
    times: int = 1
    #: For "write": let half of the bytes land first.
    short: bool = False
    hits: int = 0


class FaultyIO(FileIO):
    def __init__(self) -> None:
        self.faults: list[Fault] = []
        self.calls: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def arm(self, fault: Fault) -> Fault:
        with self._lock:
            self.faults.append(fault)
        return fault

    def disarm(self) -> None:
        with self._lock:
            self.faults.clear()

    def _name_of_fd(self, fd: int) -> str:
        try:
            return os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            return ""

    #: Set by a simulated power cut: nothing reaches the disk any more.
    dead = False

    def _check(self, op: str, name: str) -> Fault | None:
        if self.dead:
            raise OSError(errno.EIO, "injected: the machine lost power", name)
        with self._lock:
            self.calls.append((op, name))
            for fault in self.faults:
                if fault.op == op and fault.match in name and fault.times != 0:
                    fault.times -= 1
                    fault.hits += 1
                    return fault
        return None

    def _raise(self, fault: Fault, name: str) -> None:
        raise OSError(fault.err, f"injected {os.strerror(fault.err)}", name)

    def open_append(self, path: Path) -> int:
        if fault := self._check("open", path.name):
            self._raise(fault, path.name)
        return super().open_append(path)

    def open_new(self, path: Path) -> int:
        if fault := self._check("open", path.name):
            self._raise(fault, path.name)
        return super().open_new(path)

    def write(self, fd: int, data: bytes | memoryview) -> int:
        name = self._name_of_fd(fd)
        fault = self._check("write", name)
        if fault is not None:
            if fault.short and len(data) > 1:
                written = super().write(fd, bytes(data[: len(data) // 2]))
                self.arm(Fault("write", errno.ENOSPC, match=fault.match or name))
                return written
            self._raise(fault, name)
        return super().write(fd, data)

    def fsync(self, fd: int) -> None:
        name = self._name_of_fd(fd)
        if fault := self._check("fsync", name):
            self._raise(fault, name)
        super().fsync(fd)

    def truncate(self, fd: int, length: int) -> None:
        name = self._name_of_fd(fd)
        if fault := self._check("truncate", name):
            self._raise(fault, name)
        super().truncate(fd, length)

    def replace(self, src: Path, dst: Path) -> None:
        if fault := self._check("replace", dst.name):
            self._raise(fault, dst.name)
        super().replace(src, dst)

    def unlink(self, path: Path) -> None:
        if fault := self._check("unlink", path.name):
            self._raise(fault, path.name)
        super().unlink(path)

    def fsync_dir(self, path: Path) -> None:
        if fault := self._check("fsync_dir", path.name):
            self._raise(fault, path.name)
        super().fsync_dir(path)


class PowerCutIO(FaultyIO):
    """Tracks what is durable in ``directory`` (not its subdirectories)."""

    def __init__(self, directory: Path, seed: int = 0) -> None:
        super().__init__()
        #: Held around every real operation, so a power cut never interleaves with one.
        self._io_lock = threading.RLock()
        self.directory = directory
        self.rng = random.Random(seed)
        self.durable_content: dict[int, bytes] = {}
        self.durable_names: dict[str, int] = {}
        directory.mkdir(parents=True, exist_ok=True)
        for name, inode in self._scan().items():
            self.durable_names[name] = inode
            self.durable_content[inode] = (directory / name).read_bytes()

    def _scan(self) -> dict[str, int]:
        names: dict[str, int] = {}
        for entry in os.scandir(self.directory):
            if entry.is_file(follow_symlinks=False) and entry.name != ".lock":
                names[entry.name] = entry.inode()
        return names

    def open_append(self, path: Path) -> int:
        with self._io_lock:
            return self._forget_reused_inode(super().open_append(path))

    def open_new(self, path: Path) -> int:
        with self._io_lock:
            return self._forget_reused_inode(super().open_new(path))

    def _forget_reused_inode(self, fd: int) -> int:
        """A file with no durable name is new: its inode number may be a freed file's."""
        inode = os.fstat(fd).st_ino
        if inode not in self.durable_names.values():
            self.durable_content[inode] = b""
        return fd

    def write(self, fd: int, data: bytes | memoryview) -> int:
        with self._io_lock:
            return super().write(fd, data)

    def truncate(self, fd: int, length: int) -> None:
        with self._io_lock:
            super().truncate(fd, length)

    def replace(self, src: Path, dst: Path) -> None:
        with self._io_lock:
            super().replace(src, dst)

    def unlink(self, path: Path) -> None:
        with self._io_lock:
            super().unlink(path)

    def fsync(self, fd: int) -> None:
        with self._io_lock:
            self._fsync_and_remember(fd)

    def _fsync_and_remember(self, fd: int) -> None:
        super().fsync(fd)
        inode = os.fstat(fd).st_ino
        with open(f"/proc/self/fd/{fd}", "rb") as f:
            content = f.read()
        with self._lock:
            self.durable_content[inode] = content

    def fsync_dir(self, path: Path) -> None:
        with self._io_lock:
            self._fsync_dir_and_remember(path)

    def _fsync_dir_and_remember(self, path: Path) -> None:
        super().fsync_dir(path)
        if Path(path).resolve() == self.directory.resolve():
            names = self._scan()
            with self._lock:
                self.durable_names = names

    def power_cut(self, torn: bool = True) -> list[str]:
        """Rewrite the directory to its durable view; returns a description of what changed."""
        with self._io_lock:
            self.dead = True
            return self._rewrite(torn)

    def _rewrite(self, torn: bool) -> list[str]:
        changes: list[str] = []
        current = self._scan()
        contents = {name: (self.directory / name).read_bytes() for name in current}
        for name in current:
            (self.directory / name).unlink()
        for name, inode in self.durable_names.items():
            durable = self.durable_content.get(inode, b"")
            now = contents.get(name) if current.get(name) == inode else None
            data = durable
            if torn and now is not None and now.startswith(durable) and len(now) > len(durable):
                data = now[: self.rng.randint(len(durable), len(now))]
            (self.directory / name).write_bytes(data)
            if now != data:
                changes.append(f"{name}: {len(now or b'')} -> {len(data)} bytes")
        for name in current:
            if name not in self.durable_names:
                changes.append(f"{name}: lost (directory entry never fsynced)")
        return changes
