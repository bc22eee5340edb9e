"""Loading the data directory: snapshot files, then the journal replayed over them.

Used by the store at start and by the CLI's read-only commands. It never writes: the store
decides what to do with what was found (truncate a torn tail, quarantine, compact).
"""

from __future__ import annotations

import logging
from pathlib import Path

import attrs

from store.backups import newest_valid_backup
from store.dedupe import DoneIds
from store.errors import StoreCorrupt
from store.journal import JournalRead, read_journal
from store.layout import DataFiles
from store.quarantine import QuarantineItem
from store.snapshot import read_inbox, read_records
from store.state import InvalidOp, StoreState

log = logging.getLogger("store.loader")


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


def load(files: DataFiles, window: float, max_ids: int, now: float) -> Loaded:
    """Load everything; raises ``StoreCorrupt`` naming the newest valid backup."""
    try:
        return _load(files, window, max_ids, now)
    except StoreCorrupt as exc:
        backup = newest_valid_backup(files.backups)
        raise StoreCorrupt(exc.path, exc.detail, exc.line, backup) from exc
    except OSError as exc:
        path = Path(exc.filename) if exc.filename else files.root
        raise StoreCorrupt(path, f"cannot be read ({exc.strerror})", None, None) from exc


def _load(files: DataFiles, window: float, max_ids: int, now: float) -> Loaded:
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

    journals = [read_journal(path) for path in files.journals()]
    last_seq = inbox.seq
    replayed = 0
    for journal in journals:
        previous = None
        for line in journal.lines:
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
    forgotten = state.done.prune(now)
    log.info(
        "loaded %d records, %d pending inbox entries, %d done ids (%d expired) from %s; "
        "replayed %d journal entries after seq %d",
        len(state.records),
        len(state.pending),
        len(state.done),
        forgotten,
        files.root,
        replayed,
        inbox.seq,
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
