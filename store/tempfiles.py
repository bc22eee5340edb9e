"""Temporary media files (voice notes, synthesized audio) under one root, bounded.

The original bot wrote ``tmp/audio_<ms>.ogg`` and leaked it whenever transcription failed.
Here every temp file is created through ``TempFiles.file`` (removed in ``finally``), and a
sweep at start and on an interval removes leftovers older than ``max_age_seconds`` and, oldest
first, whatever exceeds ``max_total_bytes``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import trio

log = logging.getLogger("store.tempfiles")


@attrs.define
class TempFiles:
    root: Path = attrs.field(converter=Path)
    max_total_bytes: int
    max_age_seconds: float

    @asynccontextmanager
    async def file(self, suffix: str) -> AsyncIterator[Path]:
        """An unguessable, not yet existing path under ``root``; removed on exit."""
        if "/" in suffix or "\\" in suffix or ".." in suffix:
            raise ValueError(f"invalid suffix {suffix!r}")
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / f"{secrets.token_urlsafe(16)}{suffix}"
        try:
            yield path
        finally:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def sweep(self) -> int:
        """Remove old leftovers, then the oldest files while over the size cap."""
        try:
            entries = list(os.scandir(self.root))
        except FileNotFoundError:
            return 0
        now = time.time()
        files: list[tuple[float, int, Path]] = []
        for entry in entries:
            with contextlib.suppress(FileNotFoundError):
                if entry.is_file(follow_symlinks=False):
                    st = entry.stat(follow_symlinks=False)
                    files.append((st.st_mtime, st.st_size, Path(entry.path)))
        files.sort()
        removed = 0
        total = sum(size for _, size, _ in files)
        for mtime, size, path in files:
            if now - mtime < self.max_age_seconds and total <= self.max_total_bytes:
                continue
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            removed += 1
            total -= size
        if removed:
            log.info("temp sweep: removed %d file(s) from %s", removed, self.root)
        return removed

    async def run(
        self, interval: float, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Sweep now, report started, then sweep every ``interval`` seconds."""
        await trio.to_thread.run_sync(self.sweep)
        task_status.started()
        while True:
            await trio.sleep(interval)
            await trio.to_thread.run_sync(self.sweep)
