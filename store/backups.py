"""Backup files of the records snapshot: naming, copying, rotation, finding the newest valid.

A backup is a copy of ``threads-data.json`` (same keyed format, so any tool that reads the
snapshot reads a backup) named ``threads-data.<kind>.<UTC stamp>.json`` in ``data/backups/``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import attrs

from store.errors import StoreCorrupt
from store.fileio import FileIO
from store.snapshot import read_records, write_chunks_atomic

log = logging.getLogger("store.backups")

_NAME = re.compile(r"^threads-data\.(?P<kind>[a-z][a-z0-9-]*)\.(?P<stamp>\d{8}T\d{12}Z)\.json$")
_STAMP = "%Y%m%dT%H%M%S%fZ"


@attrs.frozen
class BackupFile:
    path: Path
    kind: str
    taken_at: datetime


def backup_path(directory: Path, kind: str, when: datetime) -> Path:
    if not re.fullmatch(r"[a-z][a-z0-9-]*", kind):
        raise ValueError(f"backup kind must be lowercase letters, digits and dashes: {kind!r}")
    return directory / f"threads-data.{kind}.{when.astimezone(UTC).strftime(_STAMP)}.json"


def list_backups(directory: Path) -> list[BackupFile]:
    """Backups in ``directory``, newest first (by the time in the name)."""
    found: list[BackupFile] = []
    try:
        names = [p.name for p in directory.iterdir()]
    except FileNotFoundError:
        return found
    for name in names:
        match = _NAME.match(name)
        if match:
            taken = datetime.strptime(match["stamp"], _STAMP).replace(tzinfo=UTC)
            found.append(BackupFile(directory / name, match["kind"], taken))
    found.sort(key=lambda b: b.taken_at, reverse=True)
    return found


def _read_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            yield chunk


def copy_to_backup(io: FileIO, source: Path, directory: Path, kind: str, when: datetime) -> Path:
    """Durably copy ``source`` into ``directory`` as a backup of ``kind``."""
    directory.mkdir(parents=True, exist_ok=True)
    target = backup_path(directory, kind, when)
    write_chunks_atomic(io, target, _read_chunks(source))
    return target


def rotate(io: FileIO, directory: Path, keep: dict[str, int], keep_other: int) -> list[Path]:
    """Delete the oldest backups of each kind beyond its count; returns what was removed."""
    removed: list[Path] = []
    seen: dict[str, int] = {}
    for backup in list_backups(directory):
        seen[backup.kind] = seen.get(backup.kind, 0) + 1
        if seen[backup.kind] > keep.get(backup.kind, keep_other):
            io.unlink_quietly(backup.path)
            removed.append(backup.path)
    if removed:
        io.fsync_dir(directory)
        log.info("removed %d old backup(s)", len(removed))
    return removed


def validate_backup(path: Path) -> tuple[int, int]:
    """(valid records, invalid records); raises ``StoreCorrupt`` if the file is unreadable."""
    read = read_records(path)
    return len(read.records), len(read.invalid)


def newest_valid_backup(directory: Path) -> Path | None:
    for backup in list_backups(directory):
        try:
            validate_backup(backup.path)
        except (StoreCorrupt, OSError) as exc:
            log.warning("backup %s is not usable: %s", backup.path, exc)
            continue
        return backup.path
    return None
