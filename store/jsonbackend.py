"""The JSON file backend: ``StoreBackend`` and ``Housekeeping`` on one data directory.

One process owns the directory (an exclusive lock: the backend's one lease) and keeps the
whole state in memory (``store.state``); the files are there to rebuild it. A write applies
its change to the state and returns once the commit log has made it durable in
``journal.jsonl`` (``store.commitlog``); snapshots fold the journal into
``threads-data.json`` + ``inbox.json`` and re-persist the state after a failed write
(``store.recovery``); the maintenance task compacts, backs up and expires old records
(``store.maintenance``). The formats are in ``store.snapshot`` and ``store.journal``.

``open_json_backend`` locks the directory, loads it (snapshot, then the journal replayed
over it), quarantines invalid items, cuts a torn journal tail, and runs the commit,
recovery and maintenance tasks until exit, when it drains queued writes and writes a final
snapshot if the store is healthy.
"""

from __future__ import annotations

import gc
import logging
import math
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import trio

from store.backend import Lease
from store.commitlog import Change, CommitLog, Health
from store.config import StoreConfig
from store.journal import JournalWriter
from store.layout import DataFiles
from store.loader import Loaded, load
from store.lock import DataDirLock
from store.maintenance import Maintenance
from store.quarantine import append_quarantine, count_quarantine
from store.records import InboxEntry, UserRecord
from store.recovery import Checkpointer
from store.state import (
    Undo,
    encode_delete,
    encode_inbox_add,
    encode_inbox_done,
    encode_put,
)
from store.status import InboxStatus, StoreStats

log = logging.getLogger("store.jsonbackend")

#: The data directory's lock, as a lease: one partition, never expires while held.
DIRECTORY_LEASE = Lease(partition=0, fence=0, expires_at=math.inf)


class JsonFileBackend:
    """The state of one data directory, in memory, made durable in its JSON files."""

    def __init__(
        self,
        config: StoreConfig,
        files: DataFiles,
        loaded: Loaded,
        writer: JournalWriter,
        lock: DataDirLock,
    ) -> None:
        self._config = config
        self._files = files
        self._lock = lock
        self._state = state = loaded.state
        self._log = CommitLog(
            config,
            files,
            state,
            writer,
            durable_seq=loaded.last_seq,
            old_journal_bytes=loaded.journals[0].total_bytes,
            unsnapshotted=loaded.last_seq > loaded.snapshot_seq,
        )
        self._checkpointer = Checkpointer(
            config,
            files,
            state,
            self._log,
            snapshot_seq=loaded.snapshot_seq,
            snapshot_bytes=loaded.snapshot_bytes,
        )
        self._maintenance = Maintenance(config, files, state, self._log, self._checkpointer)
        self._quarantined = count_quarantine(files.quarantine)

    @property
    def health(self) -> Health:
        """Whether writes are taken; shared by the commit log, snapshots and maintenance."""
        return self._log.health

    # ------------------------------------------------------------ the local view

    def get(self, user_id: str) -> UserRecord | None:
        return self._state.get(user_id)

    def records(self) -> Iterator[UserRecord]:
        copied: list[UserRecord] = []
        for shard in self._state.records.shards:
            copied.extend(shard.values())
        return iter(copied)

    def __len__(self) -> int:
        return len(self._state.records)

    def inbox_status(self, message_id: str) -> InboxStatus:
        if message_id in self._state.pending:
            return InboxStatus.PENDING
        if self._state.done.get(message_id, self._config.clock()) is not None:
            return InboxStatus.DONE
        return InboxStatus.NEW

    def pending_for(self, user_id: str) -> list[InboxEntry]:
        return self._state.pending_for(user_id)

    def pending_users(self) -> list[str]:
        return list(self._state.pending_by_user)

    def pending_inbox(self) -> list[InboxEntry]:
        return self._state.pending_entries()

    # ------------------------------------------------------------------ writes

    async def put(self, record: UserRecord) -> None:
        body = encode_put(record)
        await self._log.commit(lambda: ([body], [self._state.put(record)]))

    async def delete(self, user_id: str, reason: str) -> None:
        body = encode_delete(user_id, reason)

        def apply() -> Change:
            if user_id in self._state.records:
                return [body], [self._state.delete(user_id)]
            return [], []  # still ordered after any write in flight

        await self._log.commit(apply)

    async def inbox_add(
        self, entries: Sequence[InboxEntry], *, payloads: Sequence[bytes] | None = None
    ) -> list[InboxStatus]:
        entries = list(entries)
        if payloads is None:
            bodies = [encode_inbox_add(entry) for entry in entries]
        else:
            bodies = [
                encode_inbox_add(entry, payload)
                for entry, payload in zip(entries, payloads, strict=True)
            ]
        statuses: list[InboxStatus] = []

        def apply() -> Change:
            to_write: list[bytes] = []
            undo: list[Undo] = []
            for entry, body in zip(entries, bodies, strict=True):
                status = self.inbox_status(entry.message_id)
                statuses.append(status)
                if status is InboxStatus.NEW:
                    undo.append(self._state.inbox_add(entry))
                    to_write.append(body)
            # With nothing new, still wait for earlier writes: a PENDING id may not be durable.
            return to_write, undo

        await self._log.commit(apply)
        return statuses

    async def settle(
        self, message_ids: Sequence[str], outcome: str, *, record: UserRecord | None = None
    ) -> None:
        ids = list(message_ids)
        if not ids and record is None:
            return
        at = self._config.clock()
        bodies = [encode_put(record)] if record is not None else []
        if ids:
            bodies.append(encode_inbox_done(ids, outcome, at))

        def apply() -> Change:
            undo: list[Undo] = [self._state.put(record)] if record is not None else []
            undo += [self._state.inbox_done(message_id, at) for message_id in ids]
            return bodies, undo

        await self._log.commit(apply)

    # ------------------------------------------------------------ lease, health

    def lease(self, user_id: str) -> Lease | None:
        return DIRECTORY_LEASE if self._lock.held else None

    @property
    def healthy(self) -> bool:
        return self.health.healthy

    @property
    def last_error(self) -> str | None:
        return self.health.last_error

    @property
    def outage_since(self) -> float | None:
        return self.health.outage_since

    def stats(self) -> StoreStats:
        state, commit_log, checkpointer, health = (
            self._state,
            self._log,
            self._checkpointer,
            self.health,
        )
        return StoreStats(
            records=len(state.records),
            pending=len(state.pending),
            done_ids=len(state.done),
            journal_bytes=commit_log.journal_bytes(),
            snapshot_bytes=checkpointer.snapshot_bytes,
            last_commit_seconds=commit_log.last_commit_seconds,
            journal_syncs=commit_log.journal_syncs.summary(),
            commits=commit_log.commits,
            mutations=commit_log.mutations,
            compactions=checkpointer.compactions,
            last_compaction_seconds=checkpointer.last_compaction_seconds,
            backups=self._maintenance.backups,
            healthy=health.healthy,
            outage_since=health.outage_since,
            quarantined=self._quarantined,
            last_error=health.last_error,
            journal_seq=commit_log.durable_seq,
            snapshot_seq=checkpointer.snapshot_seq,
        )

    # ------------------------------------------------------------ housekeeping

    async def compact(self) -> None:
        await self._checkpointer.checkpoint("requested")

    async def backup(self, kind: str = "manual") -> Path:
        return await self._maintenance.backup(kind)

    async def maintain(self) -> None:
        await self._maintenance.maintain()

    # --------------------------------------------------------------- lifecycle

    async def _start(self, nursery: trio.Nursery, checkpoint_now: bool) -> None:
        await nursery.start(self._log.run)
        await nursery.start(self._checkpointer.run_recovery)
        await nursery.start(self._maintenance.run)
        if checkpoint_now:
            self._log.compaction_wanted.set()

    async def _shutdown(self) -> None:
        """Drain queued writes, write a final snapshot if anything changed, close the fd."""
        await self._log.drain()
        await self._checkpointer.final()
        self._log.close()


def _boot_fixups(config: StoreConfig, files: DataFiles, loaded: Loaded) -> JournalWriter:
    """Quarantine invalid items, cut a torn journal tail, open the journal for appending."""
    io = config.io
    if loaded.quarantined:
        append_quarantine(io, files.quarantine, loaded.quarantined)
    live = loaded.live_journal
    writer = JournalWriter.open(io, files.journal)
    if live.torn:
        log.warning(
            "%s: truncating torn tail at byte %d (line %s)",
            files.journal,
            live.good_bytes,
            live.torn_line,
        )
        io.truncate(writer.fd, live.good_bytes)
        io.fsync(writer.fd)
        writer.size = live.good_bytes
    if not live.total_bytes:
        io.fsync_dir(files.root)  # the journal may have just been created
    return writer


@asynccontextmanager
async def open_json_backend(config: StoreConfig) -> AsyncIterator[JsonFileBackend]:
    """Lock ``data_dir``, load it, run the backend's tasks, and yield the backend.

    Raises ``DataDirLocked`` if another process holds the directory, ``StoreCorrupt`` if a
    data file is damaged (naming the newest valid backup and the restore command). On exit,
    however it happens, queued writes are flushed and a final snapshot is written if the
    store is healthy; whatever was acknowledged was already durable in the journal.
    """
    files = DataFiles(config.data_dir)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    lock = DataDirLock(files.lock)
    lock.acquire()
    try:
        loaded = await trio.to_thread.run_sync(
            partial(
                load,
                files,
                config.dedupe_window_seconds,
                config.dedupe_max_ids,
                config.clock(),
                progress_seconds=config.replay_progress_seconds,
            )
        )
        writer = await trio.to_thread.run_sync(_boot_fixups, config, files, loaded)
        if len(loaded.state.records) >= config.gc_freeze_min_records:
            gc.freeze()
        backend = JsonFileBackend(config, files, loaded, writer, lock)
        checkpoint_now = bool(
            loaded.quarantined or files.old_journal.exists() or not loaded.snapshot_exists
        )
        body_error: BaseException | None = None
        async with trio.open_nursery() as nursery:
            await backend._start(nursery, checkpoint_now)
            try:
                yield backend
            except BaseException as exc:
                # Re-raised below, outside the nursery, so callers see their own exception
                # rather than an ExceptionGroup wrapping it.
                body_error = exc
            finally:
                with trio.CancelScope(shield=True):
                    await backend._shutdown()
                nursery.cancel_scope.cancel()
        if body_error is not None:
            raise body_error
    finally:
        lock.release()
