"""Upkeep of the data directory: compactions when due, backups and their rotation, retention.

The maintenance task (``Maintenance.run``) wakes when the commit log asks for a compaction
(the journal grew past ``journal_max_bytes``) and every ``maintenance_interval_seconds`` for a
full pass (``maintain``): forget done message ids that left the dedupe window, compact when
the journal is too large or too old (or an earlier compaction did not finish), take the
hourly and daily backups that are due, and delete the records inactive for longer than
``retention_days``. Nothing here is needed for correctness: a pass that fails is logged and
the next one tries again, and a failed compaction is retried no sooner than the next pass.

A backup (``backup``) makes the snapshot current, copies ``threads-data.json`` into
``backups/`` durably and deletes the oldest backups beyond each kind's count.

Temporary media files have their own sweeper (``store.tempfiles``).
"""

from __future__ import annotations

import contextlib
import logging
import time
from datetime import UTC, datetime
from pathlib import Path

import trio

from store.backups import copy_to_backup, list_backups, rotate
from store.commitlog import Change, CommitLog
from store.config import StoreConfig
from store.errors import StoreUnavailable
from store.layout import DAILY, HOURLY, DataFiles
from store.recovery import Checkpointer
from store.state import StoreState, Undo, encode_delete

log = logging.getLogger("store.maintenance")

#: Records scanned by the retention cleanup between two checkpoints.
_SCAN_SHARDS_PER_CHECKPOINT = 16
_DELETE_CHUNK = 1000
_HOUR = 3600.0
_DAY = 86400.0


class Maintenance:
    """The periodic work of one data directory, and the backups it makes on demand."""

    def __init__(
        self,
        config: StoreConfig,
        files: DataFiles,
        state: StoreState,
        commit_log: CommitLog,
        checkpointer: Checkpointer,
    ) -> None:
        self._config = config
        self._files = files
        self._state = state
        self._log = commit_log
        self._checkpointer = checkpointer
        self._compaction_retry_at = 0.0
        self.backups = 0

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The maintenance task: compactions asked for at once, a full pass on the interval."""
        task_status.started()
        wanted = self._log.compaction_wanted
        interval = self._config.maintenance_interval_seconds
        next_run = trio.current_time() + interval
        while True:
            with trio.move_on_at(next_run):
                await wanted.wait()
            if wanted.is_set():
                wanted.clear()
                if self._log.health.healthy:
                    await self._compact_quietly("journal size")
            if trio.current_time() >= next_run:
                try:
                    await self.maintain()
                except (OSError, StoreUnavailable) as exc:
                    log.error("maintenance failed: %s", exc)
                next_run = trio.current_time() + interval

    async def maintain(self) -> None:
        """One maintenance pass (normally run every ``maintenance_interval_seconds``)."""
        now = self._config.clock()
        forgotten = self._state.done.prune(now)
        if forgotten:
            log.info("dedupe: forgot %d done message ids", forgotten)
        if not self._log.health.healthy:
            return
        if self._compaction_due():
            await self._compact_quietly("journal age or size")
        with contextlib.suppress(StoreUnavailable, OSError):
            await self._backups_due(now)
        await self._retention(now)

    async def backup(self, kind: str = "manual") -> Path:
        """Make the snapshot current, copy it into ``backups/`` and rotate old backups."""
        checkpointer, files, config = self._checkpointer, self._files, self._config
        async with checkpointer.lock:
            if checkpointer.stale():
                await checkpointer.checkpoint_locked(f"{kind} backup")
            if not files.records.exists():
                await checkpointer.checkpoint_locked(f"{kind} backup")
            when = datetime.fromtimestamp(config.clock(), UTC)
            path = await trio.to_thread.run_sync(
                copy_to_backup, config.io, files.records, files.backups, kind, when
            )
            await trio.to_thread.run_sync(
                rotate,
                config.io,
                files.backups,
                {HOURLY: config.backups_hourly, DAILY: config.backups_daily},
                config.backups_manual,
            )
        self.backups += 1
        log.info("backup written: %s", path)
        return path

    # ------------------------------------------------------------ compaction

    def _compaction_due(self) -> bool:
        if self._log.journal_bytes() >= self._config.journal_max_bytes:
            return True
        if self._files.old_journal.exists():  # an earlier compaction did not finish
            return True
        oldest = self._log.oldest_unsnapshotted
        return (
            oldest is not None and time.monotonic() - oldest >= self._config.journal_max_age_seconds
        )

    async def _compact_quietly(self, reason: str) -> None:
        if time.monotonic() < self._compaction_retry_at:
            return
        try:
            await self._checkpointer.checkpoint(reason)
        except (OSError, StoreUnavailable) as exc:
            self._compaction_retry_at = time.monotonic() + self._config.maintenance_interval_seconds
            log.error("compaction failed (%s): %s", reason, exc)

    # ------------------------------------------------------ backups, retention

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
        """Delete, in one write, those of ``user_ids`` still inactive since before ``cutoff``."""
        bodies: list[bytes] = []

        def apply() -> Change:
            undo: list[Undo] = []
            for user_id in user_ids:
                record = self._state.get(user_id)
                if record is not None and record.last_activity < cutoff:  # not refreshed since
                    undo.append(self._state.delete(user_id))
                    bodies.append(encode_delete(user_id, "retention"))
            return bodies, undo

        await self._log.commit(apply)
        return len(bodies)
