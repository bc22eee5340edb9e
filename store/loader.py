"""Loading the data directory: snapshot files, then the journal replayed over them.

Used by the store at start and by the CLI's read-only commands. It never writes: the store
decides what to do with what was found (truncate a torn tail, quarantine, compact).

Each journal line is parsed and applied in one pass. A replay that lasts logs its progress at
INFO every ``progress_seconds`` ("replaying the journal: N of M entries (P%)"), and every load
ends with one INFO line: "store loaded: N records, M journal entries in X s" (with the
pending, done and expired counts).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import attrs

from store.backups import newest_valid_backup
from store.dedupe import DoneIds
from store.errors import StoreCorrupt
from store.journal import JournalRead, JournalScan
from store.layout import DataFiles
from store.quarantine import QuarantineItem
from store.snapshot import read_inbox, read_records
from store.state import InvalidOp, StoreState

log = logging.getLogger("store.loader")

#: How often a long replay logs its progress.
PROGRESS_SECONDS = 2.0
#: The clock is read once per this many journal lines (a replay applies ~10^5 lines a second).
_CHECK_EVERY = 1024


@attrs.define
class Loaded:
    state: StoreState
    #: The journal seq the snapshot (``inbox.json``) includes.
    snapshot_seq: int
    #: The last seq applied (snapshot or journal).
    last_seq: int
    quarantined: list[QuarantineItem]
    journals: list[JournalRead]
    snapshot_bytes: int
    replayed: int
    snapshot_exists: bool

    @property
    def live_journal(self) -> JournalRead:
        return self.journals[-1]

    @property
    def journal_bytes(self) -> int:
        return sum(j.total_bytes for j in self.journals)

    @property
    def torn(self) -> list[JournalRead]:
        return [j for j in self.journals if j.torn]


def load(
    files: DataFiles,
    window: float,
    max_ids: int,
    now: float,
    *,
    progress_seconds: float = PROGRESS_SECONDS,
    clock: Callable[[], float] = time.monotonic,
) -> Loaded:
    """Load everything; raises ``StoreCorrupt`` naming the newest valid backup.

    ``progress_seconds`` and ``clock`` pace the progress lines (module docstring).
    """
    try:
        return _load(files, window, max_ids, now, _Progress(progress_seconds, clock))
    except StoreCorrupt as exc:
        backup = newest_valid_backup(files.backups)
        raise StoreCorrupt(exc.path, exc.detail, exc.line, backup) from exc
    except OSError as exc:
        path = Path(exc.filename) if exc.filename else files.root
        raise StoreCorrupt(path, f"cannot be read ({exc.strerror})", None, None) from exc


class _Progress:
    """Logs "N of M entries" when ``interval`` has passed since the start or the last line."""

    def __init__(self, interval: float, clock: Callable[[], float]) -> None:
        self.interval = interval
        self.clock = clock
        self.started = clock()
        self._next = self.started + interval
        self.total = 0

    def check(self, done: int) -> None:
        now = self.clock()
        if now >= self._next:
            self._next = now + self.interval
            log.info(
                "replaying the journal: %d of %d entries (%d%%)",
                done,
                self.total,
                100 * done // max(1, self.total),
            )

    def elapsed(self) -> float:
        return self.clock() - self.started


def _load(files: DataFiles, window: float, max_ids: int, now: float, progress: _Progress) -> Loaded:
    state = StoreState(done=DoneIds(window, max_ids))
    quarantined: list[QuarantineItem] = []

    inbox = read_inbox(files.inbox)
    records = read_records(files.records)
    for user_id, record in records.records.items():
        state.records.set(user_id, record)
    for user_id, raw, reason in records.invalid:
        quarantined.append(QuarantineItem(files.records.name, user_id, reason, raw))
    for entry in inbox.pending:
        state.inbox_add(entry)
    for message_id, at in inbox.done:
        state.done.add(message_id, at)
    for raw, reason in inbox.invalid:
        quarantined.append(QuarantineItem(files.inbox.name, None, reason, raw))

    scans = [JournalScan.open(path) for path in files.journals()]
    progress.total = sum(scan.entries for scan in scans)
    last_seq = inbox.seq
    replayed = 0
    seen = 0
    for journal in scans:
        previous = None
        for line in journal:
            seen += 1
            if not seen % _CHECK_EVERY:
                progress.check(seen)
            if previous is not None and line.seq <= previous:
                raise StoreCorrupt(
                    journal.path, f"seq {line.seq} after {previous} (not increasing)", line.line_no
                )
            previous = line.seq
            if line.seq <= inbox.seq:
                continue
            if line.seq != last_seq + 1:
                raise StoreCorrupt(
                    journal.path,
                    f"expected seq {last_seq + 1}, found {line.seq}: journal entries are missing",
                    line.line_no,
                )
            last_seq = line.seq
            replayed += 1
            try:
                state.apply(line.op)
            except InvalidOp as exc:
                raise StoreCorrupt(journal.path, str(exc), line.line_no) from exc
            except ValueError as exc:
                source = f"{journal.path.name} line {line.line_no}"
                quarantined.append(QuarantineItem(source, line.op.get("user"), str(exc), line.op))
    journals = [scan.result() for scan in scans]
    del scans
    forgotten = state.done.prune(now)
    log.info(
        "store loaded: %d records, %d journal entries in %.1f s (after snapshot seq %d; "
        "%d pending inbox entries, %d done ids, %d expired) from %s",
        len(state.records),
        replayed,
        progress.elapsed(),
        inbox.seq,
        len(state.pending),
        len(state.done),
        forgotten,
        files.root,
    )
    return Loaded(
        state=state,
        snapshot_seq=inbox.seq,
        last_seq=last_seq,
        quarantined=quarantined,
        journals=journals,
        snapshot_bytes=records.bytes + inbox.bytes,
        replayed=replayed,
        snapshot_exists=inbox.exists or files.records.exists(),
    )
