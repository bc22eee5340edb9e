"""The store actor: the only writer of ``data/``, with group commit, compaction and recovery.

One commit task owns the journal: writers apply their mutation to the in-memory state, queue
its encoded journal line and wait; the commit task takes everything queued, writes it with one
``write`` and one ``fsync`` in a worker thread, then wakes every waiter (group commit). A
compaction (in the maintenance task) rotates the journal between two batches and writes a
fuzzy snapshot from a worker thread while commits go on.

Reads are synchronous and served from memory. A read may observe a mutation that is accepted
but not yet durable: the only writer of a record is its user actor, which awaits durability
before acting on it. If the write fails, the mutation is undone in memory (newest first) and
every waiting writer gets ``StoreUnavailable``. A writer cancelled while waiting leaves its
mutation queued: it is written anyway (cancellation means "maybe committed").

After a failed write or fsync the journal fd is closed and never used again (fsyncgate); the
store is unhealthy and refuses writes until a recovery task has written a fresh snapshot of the
in-memory state and started a new journal.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import attrs
import trio

from store.backups import copy_to_backup, list_backups, rotate
from store.config import StoreConfig
from store.disktime import DurationHistogram
from store.errors import StoreUnavailable
from store.journal import JournalWriter, frame
from store.layout import DAILY, HOURLY, DataFiles
from store.loader import Loaded, load
from store.lock import DataDirLock
from store.quarantine import append_quarantine, count_quarantine
from store.records import InboxEntry, UserRecord
from store.snapshot import inbox_chunks, record_chunks, write_chunks_atomic
from store.state import (
    Undo,
    encode_delete,
    encode_inbox_add,
    encode_inbox_done,
    encode_put,
)
from store.status import InboxStatus, StoreStats

log = logging.getLogger("store.actor")

#: Records scanned by the retention cleanup between two checkpoints.
_SCAN_SHARDS_PER_CHECKPOINT = 16
_DELETE_CHUNK = 1000
_HOUR = 3600.0
_DAY = 86400.0


@attrs.define(eq=False)
class _Write:
    """One caller's mutation(s): encoded journal bodies and how to undo them in memory."""

    bodies: list[bytes]
    undo: list[Undo]
    done: trio.Event = attrs.Factory(trio.Event)
    error: str | None = None


class _RotationFailed(Exception):
    """The journal was renamed aside but the new one could not be created."""


class Store:
    """The handle the rest of wabot uses; build it with ``open_store``."""

    def __init__(
        self, config: StoreConfig, files: DataFiles, loaded: Loaded, writer: JournalWriter
    ) -> None:
        self._config = config
        self._io = config.io
        self._files = files
        self._state = loaded.state
        self._writer: JournalWriter | None = writer
        self._durable_seq = loaded.last_seq
        self._snapshot_seq = loaded.snapshot_seq
        self._old_journal_bytes = loaded.journals[0].total_bytes
        self._snapshot_bytes = loaded.snapshot_bytes
        self._queue: list[_Write] = []
        self._inflight: list[_Write] = []
        self._wake = trio.Event()
        self._slots = trio.Semaphore(config.max_queued_writes)
        self._journal_lock = trio.Lock()
        self._snapshot_lock = trio.Lock()
        self._healthy = True
        self._last_error: str | None = None
        #: When (Unix time) the store stopped taking writes; None while it takes them.
        self._outage_since: float | None = None
        self._closing = False
        self._commit_loop_done = trio.Event()
        self._compaction_wanted = trio.Event()
        self._recovery_wanted = trio.Event()
        self._compaction_retry_at = 0.0
        self._oldest_unsnapshotted: float | None = (
            time.monotonic() if loaded.last_seq > loaded.snapshot_seq else None
        )
        self._commits = 0
        self._mutations = 0
        self._compactions = 0
        self._backups = 0
        self._last_commit_seconds = 0.0
        self._journal_syncs = DurationHistogram()
        self._last_compaction_seconds = 0.0
        self._quarantined = count_quarantine(files.quarantine)

    # ------------------------------------------------------------------ reads

    def get(self, user_id: str) -> UserRecord | None:
        return self._state.get(user_id)

    def records(self) -> Iterator[UserRecord]:
        """Every record, as of this call (a copy made shard by shard: O(n), for CLI/tools).

        Safe to iterate across awaits; it does not see later changes.
        """
        copied: list[UserRecord] = []
        for shard in self._state.records.shards:
            copied.extend(shard.values())
        return iter(copied)

    def __len__(self) -> int:
        return len(self._state.records)

    def pending_inbox(self) -> list[InboxEntry]:
        """Journaled but not done, in arrival order."""
        return self._state.pending_entries()

    def pending_for(self, user_id: str) -> list[InboxEntry]:
        """One user's journaled-but-not-done messages, in arrival order (indexed)."""
        return self._state.pending_for(user_id)

    def pending_users(self) -> list[str]:
        """Users with at least one pending message."""
        return list(self._state.pending_by_user)

    def inbox_status(self, message_id: str) -> InboxStatus:
        if message_id in self._state.pending:
            return InboxStatus.PENDING
        if self._state.done.get(message_id, self._config.clock()) is not None:
            return InboxStatus.DONE
        return InboxStatus.NEW

    @property
    def healthy(self) -> bool:
        return self._healthy

    @property
    def last_error(self) -> str | None:
        return self._last_error

    @property
    def outage_since(self) -> float | None:
        """When (Unix time) the store stopped taking writes; None while it takes them."""
        return self._outage_since

    @property
    def data_files(self) -> DataFiles:
        return self._files

    @property
    def config(self) -> StoreConfig:
        return self._config

    def stats(self) -> StoreStats:
        return StoreStats(
            records=len(self._state.records),
            pending=len(self._state.pending),
            done_ids=len(self._state.done),
            journal_bytes=self._journal_bytes(),
            snapshot_bytes=self._snapshot_bytes,
            last_commit_seconds=self._last_commit_seconds,
            journal_syncs=self._journal_syncs.summary(),
            commits=self._commits,
            mutations=self._mutations,
            compactions=self._compactions,
            last_compaction_seconds=self._last_compaction_seconds,
            backups=self._backups,
            healthy=self._healthy,
            outage_since=self._outage_since,
            quarantined=self._quarantined,
            last_error=self._last_error,
            journal_seq=self._durable_seq,
            snapshot_seq=self._snapshot_seq,
        )

    # ----------------------------------------------------------------- writes

    async def put(self, record: UserRecord) -> None:
        """Replace ``record.user_id``'s record (last writer wins); returns once durable."""
        if not isinstance(record, UserRecord):
            raise TypeError(f"put expects a UserRecord, got {type(record).__name__}")
        body = encode_put(record)
        await self._begin()
        undo = self._state.put(record)
        await self._finish(self._enqueue([body], [undo]))

    async def delete(self, user_id: str, reason: str) -> None:
        body = encode_delete(user_id, reason)
        await self._begin()
        if user_id in self._state.records:
            write = self._enqueue([body], [self._state.delete(user_id)])
        else:
            write = self._enqueue([], [])  # still ordered after any write in flight
        await self._finish(write)
        log.info("deleted record %s (%s)", user_id, reason)

    async def inbox_add(
        self, entries: Sequence[InboxEntry], *, payloads: Sequence[bytes] | None = None
    ) -> list[InboxStatus]:
        """Journal the NEW entries; returns each entry's status before this call.

        ``payloads``, if given, are the entries' payloads as the journal encodes them
        (``store.state.encode_json``), made already by the caller.
        """
        entries = list(entries)
        if payloads is None:
            bodies = [encode_inbox_add(entry) for entry in entries]
        else:
            bodies = [
                encode_inbox_add(entry, payload)
                for entry, payload in zip(entries, payloads, strict=True)
            ]
        await self._begin()
        statuses: list[InboxStatus] = []
        to_write: list[bytes] = []
        undo: list[Undo] = []
        for entry, body in zip(entries, bodies, strict=True):
            status = self.inbox_status(entry.message_id)
            statuses.append(status)
            if status is InboxStatus.NEW:
                undo.append(self._state.inbox_add(entry))
                to_write.append(body)
        # Even with nothing new, wait for earlier writes: a PENDING id may not be durable yet.
        await self._finish(self._enqueue(to_write, undo))
        return statuses

    async def inbox_done(
        self, message_ids: Sequence[str], outcome: str, *, record: UserRecord | None = None
    ) -> None:
        """Mark ids done (pending -> done); they stay known for the dedupe window.

        ``record``, if given, is put in the same durable write, ahead of the marks: the end of
        a turn stores the user's updated record and settles the messages it answered with one
        fsync instead of two.
        """
        ids = list(message_ids)
        if record is not None and not isinstance(record, UserRecord):
            raise TypeError(f"record must be a UserRecord, got {type(record).__name__}")
        if not ids and record is None:
            return
        at = self._config.clock()
        bodies = [encode_put(record)] if record is not None else []
        if ids:
            bodies.append(encode_inbox_done(ids, outcome, at))
        await self._begin()
        undo: list[Undo] = [self._state.put(record)] if record is not None else []
        undo += [self._state.inbox_done(message_id, at) for message_id in ids]
        await self._finish(self._enqueue(bodies, undo))

    async def compact(self) -> None:
        """Force a snapshot and journal rotation now."""
        async with self._snapshot_lock:
            await self._checkpoint_locked("requested")

    async def backup(self, kind: str = "manual") -> Path:
        """Make the snapshot current, copy it into ``backups/`` and rotate old backups."""
        async with self._snapshot_lock:
            if self._snapshot_stale():
                await self._checkpoint_locked(f"{kind} backup")
            if not self._files.records.exists():
                await self._checkpoint_locked(f"{kind} backup")
            when = datetime.fromtimestamp(self._config.clock(), UTC)
            path = await trio.to_thread.run_sync(
                copy_to_backup, self._io, self._files.records, self._files.backups, kind, when
            )
            await trio.to_thread.run_sync(
                rotate,
                self._io,
                self._files.backups,
                {HOURLY: self._config.backups_hourly, DAILY: self._config.backups_daily},
                self._config.backups_manual,
            )
        self._backups += 1
        log.info("backup written: %s", path)
        return path

    async def maintain(self) -> None:
        """One maintenance pass (normally run every ``maintenance_interval_seconds``)."""
        now = self._config.clock()
        forgotten = self._state.done.prune(now)
        if forgotten:
            log.info("dedupe: forgot %d done message ids", forgotten)
        if not self._healthy:
            return
        if self._compaction_due():
            await self._compact_quietly("journal age or size")
        with contextlib.suppress(StoreUnavailable, OSError):
            await self._backups_due(now)
        await self._retention(now)

    # ------------------------------------------------------------ write path

    async def _begin(self) -> None:
        """Wait for queue room, then check the store takes writes (no checkpoint after)."""
        await self._slots.acquire()
        if self._closing or not self._healthy:
            self._slots.release()
            raise StoreUnavailable(self._unavailable_reason())

    def _enqueue(self, bodies: list[bytes], undo: list[Undo]) -> _Write:
        write = _Write(bodies, undo)
        self._queue.append(write)
        self._wake.set()
        return write

    async def _finish(self, write: _Write) -> None:
        await write.done.wait()
        if write.error is not None:
            raise StoreUnavailable(write.error)

    def _unavailable_reason(self) -> str:
        if self._closing:
            return "the store is closed"
        return f"the store is unhealthy: {self._last_error}"

    async def _commit_loop(
        self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        try:
            while True:
                if not self._queue:
                    if self._closing:
                        break
                    await self._wake.wait()
                    self._wake = trio.Event()
                    continue
                self._inflight, self._queue = self._queue, []
                await self._commit()
        finally:
            # Also when cancelled: ``_shutdown`` waits for this, shielded.
            self._commit_loop_done.set()

    async def _commit(self) -> None:
        seq = self._durable_seq
        lines: list[bytes] = []
        for write in self._inflight:
            for body in write.bodies:
                seq += 1
                lines.append(frame(seq, body))
        if lines:
            async with self._journal_lock:
                if not self._inflight:
                    return  # failed meanwhile (a rotation failure)
                writer = self._writer
                if writer is None:
                    self._fail_pending(self._unavailable_reason())
                    return
                started = time.perf_counter()
                try:
                    synced = await trio.to_thread.run_sync(writer.append, b"".join(lines))
                except OSError as exc:
                    self._on_journal_failure(f"journal write failed: {exc}")
                    return
                self._journal_syncs.observe(synced)
                self._last_commit_seconds = time.perf_counter() - started
                self._durable_seq = seq
                self._commits += 1
                self._mutations += len(lines)
                if self._oldest_unsnapshotted is None:
                    self._oldest_unsnapshotted = time.monotonic()
        for write in self._inflight:
            write.done.set()
            self._slots.release()
        self._inflight = []
        if self._journal_bytes() >= self._config.journal_max_bytes:
            self._compaction_wanted.set()

    def _fail_pending(self, reason: str) -> None:
        """Undo (newest first) and fail every accepted write that is not durable."""
        failed = self._inflight + self._queue
        self._inflight, self._queue = [], []
        for write in reversed(failed):
            for step in reversed(write.undo):
                self._state.undo(step)
        for write in failed:
            write.error = reason
            write.done.set()
            self._slots.release()
        if failed:
            log.error("%d write(s) failed and were undone: %s", len(failed), reason)

    def _on_journal_failure(self, reason: str) -> None:
        self._healthy = False
        self._last_error = reason
        if self._outage_since is None:
            self._outage_since = time.time()
        log.error("store unhealthy (writes refused until it recovers): %s", reason)
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._fail_pending(reason)
        self._recovery_wanted.set()

    # ---------------------------------------------------- snapshot / compaction

    def _journal_bytes(self) -> int:
        live = self._writer.size if self._writer is not None else 0
        return live + self._old_journal_bytes

    def _snapshot_stale(self) -> bool:
        return self._durable_seq > self._snapshot_seq or self._files.old_journal.exists()

    def _compaction_due(self) -> bool:
        if self._journal_bytes() >= self._config.journal_max_bytes:
            return True
        if self._files.old_journal.exists():  # an earlier compaction did not finish
            return True
        oldest = self._oldest_unsnapshotted
        return (
            oldest is not None and time.monotonic() - oldest >= self._config.journal_max_age_seconds
        )

    async def _write_snapshot(self, seq: int) -> int:
        """Write ``threads-data.json`` then ``inbox.json`` (the commit point) in a thread."""
        shards = self._state.records.shards
        pending = self._state.pending_entries()
        done = self._state.done.seal()
        now = self._config.clock()
        io, files = self._io, self._files

        def work() -> int:
            size = write_chunks_atomic(io, files.records, record_chunks(shards))
            return size + write_chunks_atomic(
                io, files.inbox, inbox_chunks(seq, pending, done, now)
            )

        return await trio.to_thread.run_sync(work)

    def _rotate(self) -> JournalWriter:
        """Rename the live journal aside and open a new one (worker thread)."""
        self._io.replace(self._files.journal, self._files.old_journal)
        try:
            writer = JournalWriter.open(self._io, self._files.journal)
            self._io.fsync_dir(self._files.root)
        except OSError as exc:
            raise _RotationFailed(str(exc)) from exc
        return writer

    def _remove_old_journal(self) -> None:
        if self._files.old_journal.exists():
            self._io.unlink(self._files.old_journal)
            self._io.fsync_dir(self._files.root)

    async def _checkpoint_locked(self, reason: str) -> None:
        if not self._healthy:
            raise StoreUnavailable(self._unavailable_reason())
        started = time.perf_counter()
        async with self._journal_lock:
            seq = self._durable_seq
            if not self._files.old_journal.exists() and self._writer is not None:
                old = self._writer
                try:
                    self._writer = await trio.to_thread.run_sync(self._rotate)
                except _RotationFailed as exc:
                    self._old_journal_bytes = old.size
                    self._on_journal_failure(f"journal rotation failed: {exc}")
                    raise StoreUnavailable(self._last_error or str(exc)) from exc
                self._old_journal_bytes = old.size
                old.close()
            self._oldest_unsnapshotted = None
        try:
            self._snapshot_bytes = await self._write_snapshot(seq)
        except OSError as exc:
            self._last_error = f"snapshot failed: {exc}"
            log.error("compaction (%s) failed, previous snapshot kept: %s", reason, exc)
            raise
        self._snapshot_seq = seq
        try:
            await trio.to_thread.run_sync(self._remove_old_journal)
        except OSError as exc:
            log.error("could not remove %s: %s", self._files.old_journal, exc)
        else:
            self._old_journal_bytes = 0
        self._compactions += 1
        self._last_compaction_seconds = time.perf_counter() - started
        log.info(
            "snapshot written at seq %d (%s): %d records, %d bytes, %.3f s",
            seq,
            reason,
            len(self._state.records),
            self._snapshot_bytes,
            self._last_compaction_seconds,
        )

    async def _compact_quietly(self, reason: str) -> None:
        if time.monotonic() < self._compaction_retry_at:
            return
        try:
            async with self._snapshot_lock:
                await self._checkpoint_locked(reason)
        except (OSError, StoreUnavailable) as exc:
            self._compaction_retry_at = time.monotonic() + self._config.maintenance_interval_seconds
            log.error("compaction failed (%s): %s", reason, exc)

    # ------------------------------------------------------------- recovery

    async def _recovery_loop(
        self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        while True:
            await self._recovery_wanted.wait()
            try:
                await self._recover()
            except OSError as exc:
                self._last_error = f"recovery failed: {exc}"
                log.error(
                    "store recovery failed, retrying in %.1f s: %s",
                    self._config.recovery_retry_seconds,
                    exc,
                )
                await trio.sleep(self._config.recovery_retry_seconds)
                continue
            self._recovery_wanted = trio.Event()

    async def _recover(self) -> None:
        """Re-persist the in-memory state in a fresh snapshot and start a new journal."""
        async with self._snapshot_lock:
            if self._healthy:
                return
            seq = self._durable_seq
            self._snapshot_bytes = await self._write_snapshot(seq)
            self._snapshot_seq = seq
            self._writer = await trio.to_thread.run_sync(self._fresh_journal)
            self._old_journal_bytes = 0
            self._oldest_unsnapshotted = None
            self._healthy = True
            lasted = time.time() - self._outage_since if self._outage_since else 0.0
            self._outage_since = None
            log.warning(
                "store outage ended after %.1f s: state re-persisted at seq %d, new journal",
                lasted,
                seq,
            )

    def _fresh_journal(self) -> JournalWriter:
        files, io = self._files, self._io
        tmp = files.root / f".{files.journal.name}.tmp"
        fd = io.open_new(tmp)
        try:
            io.fsync(fd)
        finally:
            io.close(fd)
        io.replace(tmp, files.journal)
        if files.old_journal.exists():
            io.unlink(files.old_journal)
        io.fsync_dir(files.root)
        return JournalWriter.open(io, files.journal)

    # ----------------------------------------------------------- maintenance

    async def _maintenance_loop(
        self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        interval = self._config.maintenance_interval_seconds
        next_run = trio.current_time() + interval
        while True:
            with trio.move_on_at(next_run):
                await self._compaction_wanted.wait()
            if self._compaction_wanted.is_set():
                self._compaction_wanted = trio.Event()
                if self._healthy:
                    await self._compact_quietly("journal size")
            if trio.current_time() >= next_run:
                try:
                    await self.maintain()
                except (OSError, StoreUnavailable) as exc:
                    log.error("maintenance failed: %s", exc)
                next_run = trio.current_time() + interval

    async def _backups_due(self, now: float) -> None:
        existing = list_backups(self._files.backups)
        for kind, period in ((HOURLY, _HOUR), (DAILY, _DAY)):
            newest = next((b for b in existing if b.kind == kind), None)
            if newest is None or now - newest.taken_at.timestamp() >= period:
                await self.backup(kind)

    async def _retention(self, now: float) -> None:
        cutoff = datetime.fromtimestamp(now - self._config.retention_days * _DAY, UTC)
        expired: list[str] = []
        for index, shard in enumerate(self._state.records.shards):
            expired.extend(uid for uid, rec in list(shard.items()) if rec.last_activity < cutoff)
            if index % _SCAN_SHARDS_PER_CHECKPOINT == 0:
                await trio.lowlevel.checkpoint()
        removed = 0
        for start in range(0, len(expired), _DELETE_CHUNK):
            removed += await self._delete_expired(expired[start : start + _DELETE_CHUNK], cutoff)
        if removed:
            log.info(
                "retention: removed %d record(s) inactive since before %s (%d remain)",
                removed,
                cutoff.isoformat(),
                len(self._state.records),
            )

    async def _delete_expired(self, user_ids: list[str], cutoff: datetime) -> int:
        await self._begin()
        bodies: list[bytes] = []
        undo: list[Undo] = []
        for user_id in user_ids:
            record = self._state.get(user_id)
            if record is not None and record.last_activity < cutoff:  # not refreshed meanwhile
                undo.append(self._state.delete(user_id))
                bodies.append(encode_delete(user_id, "retention"))
        await self._finish(self._enqueue(bodies, undo))
        return len(bodies)

    # ------------------------------------------------------------- lifecycle

    async def _start(self, nursery: trio.Nursery, checkpoint_now: bool) -> None:
        await nursery.start(self._commit_loop)
        await nursery.start(self._recovery_loop)
        await nursery.start(self._maintenance_loop)
        if checkpoint_now:
            self._compaction_wanted.set()

    async def _shutdown(self) -> None:
        """Drain queued writes, write a final snapshot if anything changed, close the fd."""
        self._closing = True
        self._wake.set()
        await self._commit_loop_done.wait()
        async with self._snapshot_lock:
            if self._healthy and (self._snapshot_stale() or not self._files.inbox.exists()):
                try:
                    await self._checkpoint_locked("close")
                except (OSError, StoreUnavailable) as exc:
                    log.error("final snapshot failed (the journal has everything): %s", exc)
        if self._writer is not None:
            self._writer.close()
            self._writer = None


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
async def open_store(config: StoreConfig) -> AsyncIterator[Store]:
    """Lock ``data_dir``, load it, run the store actor, and yield the ``Store``.

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
        store = Store(config, files, loaded, writer)
        checkpoint_now = bool(
            loaded.quarantined or files.old_journal.exists() or not loaded.snapshot_exists
        )
        body_error: BaseException | None = None
        async with trio.open_nursery() as nursery:
            await store._start(nursery, checkpoint_now)
            try:
                yield store
            except BaseException as exc:
                # Re-raised below, outside the nursery, so callers see their own exception
                # rather than an ExceptionGroup wrapping it.
                body_error = exc
            finally:
                with trio.CancelScope(shield=True):
                    await store._shutdown()
                nursery.cancel_scope.cancel()
        if body_error is not None:
            raise body_error
    finally:
        lock.release()
