"""The store: the handle the rest of wabot uses, in front of the backend that keeps the state.

``open_store(config)`` opens the backend (today the JSON files of ``config.data_dir``,
``store.jsonbackend``) and yields a ``Store``. Reads are synchronous, from memory; a write
returns once its change is durable, or raises ``StoreUnavailable`` (the store recovers by
itself; callers retry later). What each call promises is the backend's contract,
``store.backend.StoreBackend``; the operator's commands (compact, backup, maintain) are its
``Housekeeping``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from store.backend import Housekeeping, StoreBackend
from store.config import StoreConfig
from store.jsonbackend import JsonFileBackend, open_json_backend
from store.layout import DataFiles
from store.records import InboxEntry, UserRecord
from store.status import InboxStatus, StoreStats

log = logging.getLogger("store.actor")


class Store:
    """The handle the rest of wabot uses; build it with ``open_store``."""

    def __init__(
        self,
        backend: StoreBackend,
        housekeeping: Housekeeping,
        config: StoreConfig,
        files: DataFiles,
    ) -> None:
        self._backend = backend
        self._housekeeping = housekeeping
        self._config = config
        self._files = files

    # ------------------------------------------------------------------ reads

    def get(self, user_id: str) -> UserRecord | None:
        return self._backend.get(user_id)

    def records(self) -> Iterator[UserRecord]:
        """Every record, as of this call (a copy: O(n), for CLI/tools).

        Safe to iterate across awaits; it does not see later changes.
        """
        return self._backend.records()

    def __len__(self) -> int:
        return len(self._backend)

    def pending_inbox(self) -> list[InboxEntry]:
        """Journaled but not done, in arrival order."""
        return self._backend.pending_inbox()

    def pending_for(self, user_id: str) -> list[InboxEntry]:
        """One user's journaled-but-not-done messages, in arrival order (indexed)."""
        return self._backend.pending_for(user_id)

    def pending_users(self) -> list[str]:
        """Users with at least one pending message."""
        return self._backend.pending_users()

    def inbox_status(self, message_id: str) -> InboxStatus:
        return self._backend.inbox_status(message_id)

    @property
    def healthy(self) -> bool:
        return self._backend.healthy

    @property
    def last_error(self) -> str | None:
        return self._backend.last_error

    @property
    def outage_since(self) -> float | None:
        """When (Unix time) the store stopped taking writes; None while it takes them."""
        return self._backend.outage_since

    @property
    def data_files(self) -> DataFiles:
        return self._files

    @property
    def config(self) -> StoreConfig:
        return self._config

    def stats(self) -> StoreStats:
        return self._backend.stats()

    # ----------------------------------------------------------------- writes

    async def put(self, record: UserRecord) -> None:
        """Replace ``record.user_id``'s record (last writer wins); returns once durable."""
        if not isinstance(record, UserRecord):
            raise TypeError(f"put expects a UserRecord, got {type(record).__name__}")
        await self._backend.put(record)

    async def delete(self, user_id: str, reason: str) -> None:
        await self._backend.delete(user_id, reason)
        log.info("deleted record %s (%s)", user_id, reason)

    async def inbox_add(
        self, entries: Sequence[InboxEntry], *, payloads: Sequence[bytes] | None = None
    ) -> list[InboxStatus]:
        """Journal the NEW entries; returns each entry's status before this call.

        ``payloads``, if given, are the entries' payloads as the journal encodes them
        (``store.state.encode_json``), made already by the caller.
        """
        return await self._backend.inbox_add(entries, payloads=payloads)

    async def inbox_done(
        self, message_ids: Sequence[str], outcome: str, *, record: UserRecord | None = None
    ) -> None:
        """Mark ids done (pending -> done); they stay known for the dedupe window.

        ``record``, if given, is put in the same durable write, ahead of the marks: the end of
        a turn stores the user's updated record and settles the messages it answered with one
        fsync instead of two. (The backend calls this ``settle``.)
        """
        if record is not None and not isinstance(record, UserRecord):
            raise TypeError(f"record must be a UserRecord, got {type(record).__name__}")
        await self._backend.settle(message_ids, outcome, record=record)

    # ----------------------------------------------------------- housekeeping

    async def compact(self) -> None:
        """Force a snapshot and journal rotation now."""
        await self._housekeeping.compact()

    async def backup(self, kind: str = "manual") -> Path:
        """Make the snapshot current, copy it into ``backups/`` and rotate old backups."""
        return await self._housekeeping.backup(kind)

    async def maintain(self) -> None:
        """One maintenance pass (normally run every ``maintenance_interval_seconds``)."""
        await self._housekeeping.maintain()

    # Tests simulate a crash by setting ``_healthy = False`` (and ``_closing = True``) on the
    # store: the file backend then writes no final snapshot on exit, as a killed process.

    @property
    def _healthy(self) -> bool:
        return self._backend.healthy

    @_healthy.setter
    def _healthy(self, value: bool) -> None:
        assert isinstance(self._backend, JsonFileBackend)
        self._backend.health.healthy = value

    @property
    def _closing(self) -> bool:
        assert isinstance(self._backend, JsonFileBackend)
        return self._backend.health.closing

    @_closing.setter
    def _closing(self, value: bool) -> None:
        assert isinstance(self._backend, JsonFileBackend)
        self._backend.health.closing = value


@asynccontextmanager
async def open_store(config: StoreConfig) -> AsyncIterator[Store]:
    """Lock ``data_dir``, load it, run the store's tasks, and yield the ``Store``.

    Raises ``DataDirLocked`` if another process holds the directory, ``StoreCorrupt`` if a
    data file is damaged (naming the newest valid backup and the restore command). On exit,
    however it happens, queued writes are flushed and a final snapshot is written if the
    store is healthy; whatever was acknowledged was already durable in the journal.
    """
    async with open_json_backend(config) as backend:
        yield Store(backend, backend, config, DataFiles(config.data_dir))
