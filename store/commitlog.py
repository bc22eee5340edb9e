"""The commit log: the journal writer and group commit, the only way a change becomes durable.

A writer calls ``CommitLog.commit(apply)``. Once there is room in the queue and the log takes
writes, ``apply`` runs at once, with no checkpoint in between: it changes the in-memory state
and returns the encoded journal bodies of that change and how to undo it. The change is queued,
and ``commit`` returns when it is durable. The commit task (``run``) takes everything queued,
writes it to ``journal.jsonl`` with one ``write`` and one ``fsync`` in a worker thread, then
wakes every waiter (group commit). Changes become durable in the order ``apply`` ran, so a
write that changes nothing (an empty ``apply``) still returns only after every earlier one.

If the write or the fsync fails, the journal fd is closed and never used again (fsyncgate),
every queued change is undone in memory (newest first), its writer gets ``StoreUnavailable``,
and ``health`` says the store is down and since when. The log refuses writes until
``restart`` gives it a fresh journal (``store.recovery`` does that after re-persisting the
state). A writer cancelled while it waits leaves its change queued: it is written anyway
(cancellation means "maybe committed").

The log also turns the journal over for a snapshot (``rotate``: the live journal is renamed
to ``journal.old.jsonl`` between two batches, and a new one opened) and asks for a compaction
(``compaction_wanted``) when the journal has grown past ``journal_max_bytes``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import attrs
import trio

from store.config import StoreConfig
from store.disktime import DurationHistogram
from store.errors import StoreUnavailable
from store.fileio import FileIO
from store.journal import JournalWriter, frame
from store.layout import DataFiles
from store.state import StoreState, Undo

log = logging.getLogger("store.commitlog")

#: What ``apply`` returns: the journal bodies of its change, and the steps that undo it.
Change = tuple[list[bytes], list[Undo]]


@attrs.define(eq=False)
class Flag:
    """A request any task may raise and one task waits for and clears (a re-armed trio.Event)."""

    _event: trio.Event = attrs.Factory(trio.Event)

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait(self) -> None:
        await self._event.wait()

    def clear(self) -> None:
        if self._event.is_set():
            self._event = trio.Event()


@attrs.define(eq=False)
class Health:
    """Whether the store takes writes, why not, and since when (read by ``stats``)."""

    healthy: bool = True
    #: Set once at shutdown: writes are refused from then on.
    closing: bool = False
    last_error: str | None = None
    #: When (Unix time) the store stopped taking writes; None while it takes them.
    outage_since: float | None = None

    def went_down(self, reason: str) -> None:
        self.healthy = False
        self.last_error = reason
        if self.outage_since is None:
            self.outage_since = time.time()

    def came_back(self) -> float:
        """Take writes again; returns how long the outage lasted (seconds)."""
        self.healthy = True
        lasted = time.time() - self.outage_since if self.outage_since else 0.0
        self.outage_since = None
        return lasted

    def unavailable_reason(self) -> str:
        if self.closing:
            return "the store is closed"
        return f"the store is unhealthy: {self.last_error}"


@attrs.define(eq=False)
class _Write:
    """One caller's change: encoded journal bodies and how to undo them in memory."""

    bodies: list[bytes]
    undo: list[Undo]
    done: trio.Event = attrs.Factory(trio.Event)
    error: str | None = None


class _RotationFailed(Exception):
    """The journal was renamed aside but the new one could not be created."""


class CommitLog:
    """The journal of one data directory and the queue of changes waiting to be written."""

    def __init__(
        self,
        config: StoreConfig,
        files: DataFiles,
        state: StoreState,
        writer: JournalWriter,
        *,
        durable_seq: int,
        old_journal_bytes: int,
        unsnapshotted: bool,
    ) -> None:
        self._config = config
        self._io: FileIO = config.io
        self._files = files
        self._state = state
        self._writer: JournalWriter | None = writer
        self.health = Health()
        #: The seq of the last journal line known to be on disk.
        self.durable_seq = durable_seq
        #: Size of ``journal.old.jsonl`` while a compaction folds it into a snapshot.
        self.old_journal_bytes = old_journal_bytes
        #: When (monotonic) the oldest change not yet in a snapshot became durable.
        self.oldest_unsnapshotted: float | None = time.monotonic() if unsnapshotted else None
        #: Set when the journal has grown past ``journal_max_bytes``.
        self.compaction_wanted = Flag()
        #: Set when a write failed: the state must be re-persisted before writes resume.
        self.recovery_wanted = Flag()
        self.commits = 0
        self.mutations = 0
        self.last_commit_seconds = 0.0
        self.journal_syncs = DurationHistogram()
        self._queue: list[_Write] = []
        self._inflight: list[_Write] = []
        self._wake = Flag()
        self._slots = trio.Semaphore(config.max_queued_writes)
        self._journal_lock = trio.Lock()
        self._done = trio.Event()

    # ----------------------------------------------------------------- writers

    async def commit(self, apply: Callable[[], Change]) -> None:
        """Run ``apply`` when the log takes the change, then return once it is durable.

        Raises ``StoreUnavailable`` (nothing applied) if the store is closed or unhealthy,
        and ``StoreUnavailable`` (the change undone) if the journal write fails.
        """
        await self._slots.acquire()
        if self.health.closing or not self.health.healthy:
            self._slots.release()
            raise StoreUnavailable(self.health.unavailable_reason())
        try:
            bodies, undo = apply()
        except BaseException:
            self._slots.release()
            raise
        write = _Write(bodies, undo)
        self._queue.append(write)
        self._wake.set()
        await write.done.wait()
        if write.error is not None:
            raise StoreUnavailable(write.error)

    def journal_bytes(self) -> int:
        """Bytes in the journal files (the live one and, mid-compaction, the old one)."""
        live = self._writer.size if self._writer is not None else 0
        return live + self.old_journal_bytes

    # ------------------------------------------------------------- the commit task

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The commit task: write each batch of queued changes until ``drain``."""
        task_status.started()
        try:
            while True:
                if not self._queue:
                    if self.health.closing:
                        break
                    await self._wake.wait()
                    self._wake.clear()
                    continue
                self._inflight, self._queue = self._queue, []
                await self._commit()
        finally:
            # Also when cancelled: ``drain`` waits for this, shielded.
            self._done.set()

    async def drain(self) -> None:
        """Refuse new writes, wait until everything queued is written (or failed)."""
        self.health.closing = True
        self._wake.set()
        await self._done.wait()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    async def _commit(self) -> None:
        seq = self.durable_seq
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
                    self._fail_pending(self.health.unavailable_reason())
                    return
                started = time.perf_counter()
                try:
                    synced = await trio.to_thread.run_sync(writer.append, b"".join(lines))
                except OSError as exc:
                    self._on_journal_failure(f"journal write failed: {exc}")
                    return
                self.journal_syncs.observe(synced)
                self.last_commit_seconds = time.perf_counter() - started
                self.durable_seq = seq
                self.commits += 1
                self.mutations += len(lines)
                if self.oldest_unsnapshotted is None:
                    self.oldest_unsnapshotted = time.monotonic()
        for write in self._inflight:
            write.done.set()
            self._slots.release()
        self._inflight = []
        if self.journal_bytes() >= self._config.journal_max_bytes:
            self.compaction_wanted.set()

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
        self.health.went_down(reason)
        log.error("store unhealthy (writes refused until it recovers): %s", reason)
        self.close()
        self._fail_pending(reason)
        self.recovery_wanted.set()

    # ------------------------------------------------ turning the journal over

    async def rotate(self) -> int:
        """Between two batches, start a new journal for the changes after the snapshot.

        Returns the seq the snapshot must include: every change up to it is in
        ``journal.old.jsonl`` (or was in a snapshot already). If an earlier compaction left the
        old journal behind, it is kept and the live one goes on. If the new journal cannot be
        created, the log goes down (as for a failed write) and ``StoreUnavailable`` is raised.
        """
        async with self._journal_lock:
            seq = self.durable_seq
            if not self._files.old_journal.exists() and self._writer is not None:
                old = self._writer
                try:
                    self._writer = await trio.to_thread.run_sync(
                        _rotate_journal, self._io, self._files
                    )
                except _RotationFailed as exc:
                    self.old_journal_bytes = old.size
                    self._on_journal_failure(f"journal rotation failed: {exc}")
                    raise StoreUnavailable(self.health.last_error or str(exc)) from exc
                self.old_journal_bytes = old.size
                old.close()
            self.oldest_unsnapshotted = None
            return seq

    async def remove_old_journal(self) -> None:
        """Delete ``journal.old.jsonl`` once a snapshot includes it (logged if that fails)."""
        try:
            await trio.to_thread.run_sync(_remove_old_journal, self._io, self._files)
        except OSError as exc:
            log.error("could not remove %s: %s", self._files.old_journal, exc)
        else:
            self.old_journal_bytes = 0

    async def restart(self) -> float:
        """After a snapshot of the whole state: a new, empty journal, and writes resume.

        Returns how long the store was down (seconds). Raises ``OSError`` if the new journal
        cannot be made; the log stays down.
        """
        self._writer = await trio.to_thread.run_sync(_fresh_journal, self._io, self._files)
        self.old_journal_bytes = 0
        self.oldest_unsnapshotted = None
        return self.health.came_back()


def _rotate_journal(io: FileIO, files: DataFiles) -> JournalWriter:
    """Rename the live journal aside and open a new one (worker thread)."""
    io.replace(files.journal, files.old_journal)
    try:
        writer = JournalWriter.open(io, files.journal)
        io.fsync_dir(files.root)
    except OSError as exc:
        raise _RotationFailed(str(exc)) from exc
    return writer


def _remove_old_journal(io: FileIO, files: DataFiles) -> None:
    if files.old_journal.exists():
        io.unlink(files.old_journal)
        io.fsync_dir(files.root)


def _fresh_journal(io: FileIO, files: DataFiles) -> JournalWriter:
    """An empty, durable ``journal.jsonl`` replacing whatever was there (worker thread)."""
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
