"""Writing and reading the snapshot files: ``threads-data.json`` and ``inbox.json``.

``threads-data.json`` is the original bot's documented keyed format (``{userId: record}``),
written one record per line so it can be produced and parsed record by record: a worker thread
serializes in a Python loop (the GIL is handed back to the event loop between records) instead
of one ``json.dumps`` call that would stall trio for seconds at 1M records.

``inbox.json`` holds the pending inbox entries, the done ids, and the journal ``seq`` the
snapshot includes. It is written after ``threads-data.json`` and is the snapshot's commit point:
replay starts after its seq, which is safe even when ``threads-data.json`` is newer than it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import attrs

from store.dedupe import Bucket
from store.errors import StoreCorrupt
from store.fileio import FileIO
from store.records import InboxEntry, UserRecord, format_time, utcnow

INBOX_FORMAT = 1
#: Records serialized between voluntary GIL releases by the snapshot thread.
YIELD_EVERY = 64
WRITE_CHUNK = 1 << 20


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def write_chunks_atomic(io: FileIO, path: Path, chunks: Iterable[bytes]) -> int:
    """Atomically replace ``path`` with the concatenated chunks; returns the size written."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = io.open_new(tmp)
    size = 0
    try:
        buffer: list[bytes] = []
        buffered = 0
        for chunk in chunks:
            buffer.append(chunk)
            buffered += len(chunk)
            if buffered >= WRITE_CHUNK:
                io.write_all(fd, b"".join(buffer))
                size += buffered
                buffer, buffered = [], 0
        io.write_all(fd, b"".join(buffer))
        size += buffered
        io.fsync(fd)
    except BaseException:
        io.close(fd)
        io.unlink_quietly(tmp)
        raise
    io.close(fd)
    try:
        io.replace(tmp, path)
    except BaseException:
        io.unlink_quietly(tmp)
        raise
    io.fsync_dir(path.parent)
    return size


def record_chunks(shards: Iterable[dict[str, UserRecord]]) -> Iterator[bytes]:
    """``threads-data.json`` content, one record per line, copying one shard at a time."""
    yield b"{"
    separator = b"\n"
    count = 0
    for shard in shards:
        for user_id, record in list(shard.items()):
            yield separator + _dumps(user_id) + b": " + _dumps(record.to_json())
            separator = b",\n"
            count += 1
            if count % YIELD_EVERY == 0:
                time.sleep(0)  # hand the GIL to the event loop thread if it is waiting
    yield b"\n}\n"


def records_from(items: Iterable[tuple[str, UserRecord]]) -> list[dict[str, UserRecord]]:
    """Wrap plain (user id, record) pairs as one 'shard' for ``record_chunks``."""
    return [dict(items)]


def inbox_chunks(
    seq: int, pending: list[InboxEntry], done: Iterable[Bucket], now: float
) -> Iterator[bytes]:
    saved = format_time(utcnow())
    yield b'{"format":%d,"seq":%d,"savedAt":"%s",\n"pending":[' % (
        INBOX_FORMAT,
        seq,
        saved.encode(),
    )
    separator = b"\n"
    for entry in pending:
        yield separator + _dumps(entry.to_json())
        separator = b",\n"
    yield b'\n],\n"done":['
    separator = b"\n"
    count = 0
    for bucket in done:
        for message_id, at in list(bucket.ids.items()):
            yield separator + _dumps([message_id, at])
            separator = b",\n"
            count += 1
            if count % (YIELD_EVERY * 4) == 0:
                time.sleep(0)
    yield b"\n]}\n"


@attrs.define
class RecordsRead:
    """Result of reading a records file: valid records and the invalid ones with reasons."""

    records: dict[str, UserRecord] = attrs.Factory(dict)
    invalid: list[tuple[str, Any, str]] = attrs.Factory(list)
    bytes: int = 0


def read_records(path: Path, backup: Path | None = None, *, missing_ok: bool = True) -> RecordsRead:
    """Read a keyed records file (ours or any keyed JSON object).

    A missing file is an empty store when ``missing_ok`` (the data directory's own snapshot
    before the first one is written); otherwise ``FileNotFoundError`` propagates. A file that
    exists but is empty is never a store: ``StoreCorrupt``, as for any unparseable file.
    """
    result = RecordsRead()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        if missing_ok:
            return result
        raise
    result.bytes = len(data)
    if not data.strip():
        raise StoreCorrupt(path, f"the file is empty ({len(data)} bytes)", None, backup)
    raw = _parse_line_per_record(data)
    if raw is None:
        try:
            parsed = json.loads(data)
        except ValueError as exc:
            line = getattr(exc, "lineno", None)
            raise StoreCorrupt(path, f"not valid JSON ({exc})", line, backup) from exc
        if isinstance(parsed, list):
            raise StoreCorrupt(
                path,
                "expected an object keyed by user id, found an array (the original bot's "
                "tmp/threads.json format: load it with `wabot store import`)",
                None,
                backup,
            )
        if not isinstance(parsed, dict):
            raise StoreCorrupt(path, "expected a JSON object keyed by user id", None, backup)
        raw = parsed.items()
    for user_id, value in raw:
        try:
            result.records[user_id] = UserRecord.from_json(user_id, value)
        except ValueError as exc:
            result.invalid.append((user_id, value, str(exc)))
    return result


def _parse_line_per_record(data: bytes) -> Iterator[tuple[str, Any]] | None:
    """Fast path for files we wrote (one record per line); ``None`` if the layout differs."""
    if not data.startswith(b"{\n") or not data.endswith(b"\n}\n"):
        if data.strip() == b"{}" or data == b"{\n}\n":
            return iter(())
        return None
    lines = data[2:-3].split(b"\n")
    pairs: list[tuple[str, Any]] = []
    last = len(lines) - 1
    try:
        for index, line in enumerate(lines):
            if index != last:
                if not line.endswith(b","):
                    return None
                line = line[:-1]
            item = json.loads(b"{" + line + b"}")
            if len(item) != 1:
                return None
            pairs.extend(item.items())
    except ValueError:
        return None
    return iter(pairs)


@attrs.define
class InboxRead:
    seq: int = 0
    pending: list[InboxEntry] = attrs.Factory(list)
    done: list[tuple[str, float]] = attrs.Factory(list)
    invalid: list[tuple[Any, str]] = attrs.Factory(list)
    exists: bool = False
    bytes: int = 0


def read_inbox(path: Path, backup: Path | None = None) -> InboxRead:
    result = InboxRead()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return result
    result.exists = True
    result.bytes = len(data)
    try:
        parsed = json.loads(data)
    except ValueError as exc:
        line = getattr(exc, "lineno", None)
        raise StoreCorrupt(path, f"not valid JSON ({exc})", line, backup) from exc
    if not isinstance(parsed, dict) or parsed.get("format") != INBOX_FORMAT:
        raise StoreCorrupt(
            path, f"expected an inbox snapshot of format {INBOX_FORMAT}", None, backup
        )
    seq, pending, done = parsed.get("seq"), parsed.get("pending"), parsed.get("done")
    if not isinstance(seq, int) or not isinstance(pending, list) or not isinstance(done, list):
        raise StoreCorrupt(path, "seq, pending or done missing or of the wrong type", None, backup)
    result.seq = seq
    for raw in pending:
        try:
            result.pending.append(InboxEntry.from_json(raw))
        except ValueError as exc:
            result.invalid.append((raw, str(exc)))
    for item in done:
        if (
            isinstance(item, list)
            and len(item) == 2
            and isinstance(item[0], str)
            and isinstance(item[1], int | float)
        ):
            result.done.append((item[0], float(item[1])))
        else:
            result.invalid.append((item, "done entry must be [id, time]"))
    return result
