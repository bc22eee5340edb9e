"""``quarantine.jsonl``: invalid records and entries, kept with the reason instead of dropped."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import attrs

from store.fileio import FileIO

log = logging.getLogger("store.quarantine")


@attrs.frozen
class QuarantineItem:
    source: str
    key: str | None
    reason: str
    raw: Any


def append_quarantine(io: FileIO, path: Path, items: list[QuarantineItem]) -> None:
    """Append ``items`` durably (one JSON line each) and log a summary."""
    if not items:
        return
    now = time.time()
    data = b"".join(
        json.dumps(
            {"at": now, "source": i.source, "key": i.key, "reason": i.reason, "raw": i.raw},
            ensure_ascii=False,
            default=str,
        ).encode()
        + b"\n"
        for i in items
    )
    fd = io.open_append(path)
    try:
        io.write_all(fd, data)
        io.fsync(fd)
    finally:
        io.close(fd)
    for item in items:
        log.error("quarantined %s from %s: %s", item.key, item.source, item.reason)
    log.error("%d invalid item(s) moved to %s", len(items), path)


def count_quarantine(path: Path) -> int:
    try:
        with path.open("rb") as f:
            return sum(1 for line in f if line.strip())
    except FileNotFoundError:
        return 0
