"""Snapshots of the in-memory state: the checkpoint that folds the journal in, and recovery.

A checkpoint (``Checkpointer.checkpoint``) has the commit log turn the journal over between two
batches, writes a fuzzy snapshot of the state as of that seq from a worker thread while
commits go on (``threads-data.json``, then ``inbox.json``, the commit point), then deletes the
old journal. Replaying the journal after the snapshot's seq gives the exact state, because
every journal operation sets a final value (``store.state``). A failed snapshot keeps the
previous one and the journal: nothing is lost, the error is raised (``OSError``) and logged.

Recovery (``Checkpointer.run_recovery``) runs after a failed journal write: the store refuses
writes until the in-memory state (every acknowledged change, and none of the failed ones) is
written in a fresh snapshot and a new, empty journal replaces the old one. It retries every
``recovery_retry_seconds`` until the disk takes writes again, then logs
"store outage ended after X s".

Snapshots and backups take ``lock`` one at a time.
"""

from __future__ import annotations

import logging
import time

import trio

from store.commitlog import CommitLog
from store.config import StoreConfig
from store.errors import StoreUnavailable
from store.layout import DataFiles
from store.snapshot import inbox_chunks, record_chunks, write_chunks_atomic
from store.state import StoreState

log = logging.getLogger("store.recovery")


class Checkpointer:
    """Writes the snapshot files of one data directory from the live state."""

    def __init__(
        self,
        config: StoreConfig,
        files: DataFiles,
        state: StoreState,
        commit_log: CommitLog,
        *,
        snapshot_seq: int,
        snapshot_bytes: int,
    ) -> None:
        self._config = config
        self._files = files
        self._state = state
        self._log = commit_log
        #: Held while a snapshot or a backup is being made.
        self.lock = trio.Lock()
        #: The journal seq the snapshot on disk includes.
        self.snapshot_seq = snapshot_seq
        self.snapshot_bytes = snapshot_bytes
        self.compactions = 0
        self.last_compaction_seconds = 0.0

    def stale(self) -> bool:
        """True if the journal holds changes the snapshot on disk does not."""
        return self._log.durable_seq > self.snapshot_seq or self._files.old_journal.exists()

    async def checkpoint(self, reason: str) -> None:
        """Snapshot now and start a new journal; ``reason`` is for the log line."""
        async with self.lock:
            await self.checkpoint_locked(reason)

    async def checkpoint_locked(self, reason: str) -> None:
        """``checkpoint`` with ``lock`` already held.

        Raises ``StoreUnavailable`` if the store is unhealthy or the journal cannot be turned
        over, ``OSError`` if the snapshot cannot be written (the previous one is kept).
        """
        health = self._log.health
        if not health.healthy:
            raise StoreUnavailable(health.unavailable_reason())
        started = time.perf_counter()
        seq = await self._log.rotate()
        try:
            self.snapshot_bytes = await self._write_snapshot(seq)
        except OSError as exc:
            health.last_error = f"snapshot failed: {exc}"
            log.error("compaction (%s) failed, previous snapshot kept: %s", reason, exc)
            raise
        self.snapshot_seq = seq
        await self._log.remove_old_journal()
        self.compactions += 1
        self.last_compaction_seconds = time.perf_counter() - started
        log.info(
            "snapshot written at seq %d (%s): %d records, %d bytes, %.3f s",
            seq,
            reason,
            len(self._state.records),
            self.snapshot_bytes,
            self.last_compaction_seconds,
        )

    async def final(self) -> None:
        """At shutdown, once no write is queued: snapshot if anything changed since the last."""
        async with self.lock:
            health = self._log.health
            if health.healthy and (self.stale() or not self._files.inbox.exists()):
                try:
                    await self.checkpoint_locked("close")
                except (OSError, StoreUnavailable) as exc:
                    log.error("final snapshot failed (the journal has everything): %s", exc)

    async def _write_snapshot(self, seq: int) -> int:
        """Write ``threads-data.json`` then ``inbox.json`` (the commit point) in a thread."""
        shards = self._state.records.shards
        pending = self._state.pending_entries()
        done = self._state.done.seal()
        now = self._config.clock()
        io, files = self._config.io, self._files

        def work() -> int:
            size = write_chunks_atomic(io, files.records, record_chunks(shards))
            return size + write_chunks_atomic(
                io, files.inbox, inbox_chunks(seq, pending, done, now)
            )

        return await trio.to_thread.run_sync(work)

    # ------------------------------------------------------------- recovery

    async def run_recovery(
        self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """The recovery task: after each failed write, re-persist the state until it works."""
        task_status.started()
        wanted = self._log.recovery_wanted
        while True:
            await wanted.wait()
            try:
                await self._recover()
            except OSError as exc:
                self._log.health.last_error = f"recovery failed: {exc}"
                log.error(
                    "store recovery failed, retrying in %.1f s: %s",
                    self._config.recovery_retry_seconds,
                    exc,
                )
                await trio.sleep(self._config.recovery_retry_seconds)
                continue
            wanted.clear()

    async def _recover(self) -> None:
        """Re-persist the in-memory state in a fresh snapshot and start a new journal."""
        async with self.lock:
            if self._log.health.healthy:
                return
            seq = self._log.durable_seq
            self.snapshot_bytes = await self._write_snapshot(seq)
            self.snapshot_seq = seq
            lasted = await self._log.restart()
            log.warning(
                "store outage ended after %.1f s: state re-persisted at seq %d, new journal",
                lasted,
                seq,
            )
