"""The interface the durable state goes through: records, the inbox and its dedupe ids, leases.

``Store`` (``store.actor``) is the handle the rest of wabot uses; behind it sits one
``StoreBackend``. Today that is ``JsonFileBackend`` (``store.jsonbackend``): one process owns
a data directory of JSON files. A backend shared by several processes (Redis Streams, one
stream per customer partition) is a second implementation of the same protocol; the contract
tests in ``tests/test_store_contract.py`` are written to run against any of them.

The words the contract uses:

*Durable*
    Survives the process being killed and the machine losing power: on the file backend,
    written and fsynced; on a server, acknowledged by a server configured to persist each
    write before it answers. A write method that returns has made its change durable.

*The local view*
    What the reads (``get``, ``pending_for``, ``inbox_status``...) answer from: memory, no
    I/O, so they are synchronous. It holds every durable change for the customers this
    process holds a lease on, and may show a change that a write has accepted but not yet
    made durable: the only writer of a customer's record is their actor, which waits for its
    write before acting on it. A backend shared by several processes keeps the local view of
    the customers whose partitions it owns (loaded when it takes a partition over).

*Unavailable*
    A write that fails raises ``StoreUnavailable``: the change may or may not be durable
    (like a timeout), and the local view no longer shows it. From then on ``healthy`` is
    false, ``outage_since`` says since when, and every write fails fast with
    ``StoreUnavailable`` until the backend has recovered by itself (no caller does anything
    but retry later: the gateway answers 503 so that Whapi redelivers, a turn waits). Writes
    are also refused, with ``StoreUnavailable``, once the backend is closing.

*Cancelled*
    A write whose caller is cancelled while it waits may or may not become durable; the local
    view shows it as if it will (cancellation means "maybe committed", never "undone").

*Order*
    Writes become durable in the order they were called. A write that changes nothing (an
    ``inbox_add`` of known ids, a ``delete`` of an absent record) still returns only once
    every write called before it is durable, so its answer is about durable state.

A backend is opened by an async context manager (``open_json_backend``) that takes its lease,
loads the durable state into the local view and yields the backend; on exit, however it
happens, it writes what it accepted and releases its lease.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import attrs

from store.records import InboxEntry, UserRecord
from store.status import InboxStatus, StoreStats


@attrs.frozen
class Lease:
    """This process's right to act for the customers of one partition, until ``expires_at``.

    Only the holder of a customer's lease runs their actor, sends to them and writes their
    record. A backend shared by several processes grants one lease per partition (a fixed
    number of partitions, a customer's being a hash of their key) with a time to live, renews
    it well before it expires, and gives every new owner of a partition a larger ``fence``:
    writes made under an older fence are refused with ``StoreUnavailable``, so a process that
    was paused past its lease writes nothing when it wakes up. Before an action that cannot be
    taken back (a send), the holder checks that ``remaining`` is above a safety margin.

    The file backend has one partition and one lease, the data directory's lock: held from
    open to close, it never expires (``expires_at`` is ``math.inf``) and its fence is 0.
    """

    partition: int
    #: Grows at every change of owner of ``partition``.
    fence: int
    #: On trio's clock (``trio.current_time()``).
    expires_at: float

    def remaining(self, now: float) -> float:
        """Seconds left at ``now`` (trio's clock); zero or less once expired."""
        return self.expires_at - now


@runtime_checkable
class StoreBackend(Protocol):
    """Where the durable state lives; see the module docstring for the words used here.

    Records: one ``UserRecord`` per customer, replaced whole (last writer wins). The inbox:
    every inbound message is added before its webhook is acknowledged, is *pending* until it
    is *settled* (answered, or dropped by a rule), and its id is then remembered as *done* for
    the dedupe window (``StoreConfig.dedupe_window_seconds``, bounded by
    ``dedupe_max_ids``), so that a redelivery is recognised. Pending messages are never
    forgotten.
    """

    # ------------------------------------------------------------- the local view

    def get(self, user_id: str) -> UserRecord | None:
        """The customer's record, or ``None`` if there is none."""
        ...

    def records(self) -> Iterator[UserRecord]:
        """Every record of the local view as of this call (a copy: O(n), for tools).

        Safe to iterate across awaits; it does not see later changes.
        """
        ...

    def __len__(self) -> int:
        """How many records the local view holds."""
        ...

    def inbox_status(self, message_id: str) -> InboxStatus:
        """``PENDING``, ``DONE`` (within the dedupe window) or ``NEW``."""
        ...

    def pending_for(self, user_id: str) -> list[InboxEntry]:
        """The customer's pending messages, in the order they were added."""
        ...

    def pending_users(self) -> list[str]:
        """The customers with at least one pending message (their actors are woken at start)."""
        ...

    def pending_inbox(self) -> list[InboxEntry]:
        """Every pending message of the local view, in the order they were added."""
        ...

    # ------------------------------------------------------------------ writes

    async def put(self, record: UserRecord) -> None:
        """Make ``record`` the customer's record (``record.user_id``); returns once durable.

        Raises:
          StoreUnavailable: the record may not be durable; the local view shows the previous
            one.
        """
        ...

    async def delete(self, user_id: str, reason: str) -> None:
        """Remove the customer's record (nothing to remove is fine); returns once durable.

        ``reason`` says why in the journal and the logs ("retention", "reset"...).

        Raises:
          StoreUnavailable: as for ``put``.
        """
        ...

    async def inbox_add(
        self, entries: Sequence[InboxEntry], *, payloads: Sequence[bytes] | None = None
    ) -> list[InboxStatus]:
        """Add the messages not seen before to the inbox; returns each one's status before.

        For each entry, checking its id against the pending and done ids and adding it is one
        atomic step, even against other processes adding the same id: exactly one caller gets
        ``NEW`` for an id, and later ones ``PENDING`` or ``DONE``. An id repeated in
        ``entries`` is ``NEW`` at its first place and ``PENDING`` after. When this returns,
        every entry is durable (its webhook may be acknowledged), the new ones included.
        Adding needs no lease: any process may add any customer's message.

        Args:
          entries: the messages, in arrival order.
          payloads: each entry's payload already encoded as the journal encodes it
            (``store.state.encode_json``), so that it is not encoded twice.

        Raises:
          StoreUnavailable: none of ``entries`` may be acknowledged; the local view shows
            none of the new ones.
        """
        ...

    async def settle(
        self, message_ids: Sequence[str], outcome: str, *, record: UserRecord | None = None
    ) -> None:
        """Mark pending messages done (answered or dropped) and, with them, put ``record``.

        The record and the marks are one atomic, durable write: the end of a turn stores the
        customer's updated record and settles the messages it answered together, or neither.
        The ids stay known as ``DONE`` for the dedupe window. Nothing to do (no ids, no
        record) returns at once.

        Args:
          message_ids: ids of the customer's pending messages.
          outcome: why they are done ("replied", "dropped:<rule>"), for the journal.
          record: the customer's record as of this turn's end, if it changed.

        Raises:
          StoreUnavailable: neither the record nor the marks may be durable; the local view
            shows the messages still pending and the previous record.
        """
        ...

    # ------------------------------------------------------------------ leases

    def lease(self, user_id: str) -> Lease | None:
        """This process's lease on the customer's partition, or ``None`` if it holds none."""
        ...

    # ------------------------------------------------------------------ health

    @property
    def healthy(self) -> bool:
        """True while writes are taken; false from a failed write until the backend recovers."""
        ...

    @property
    def last_error(self) -> str | None:
        """The latest failure, as text (kept after recovery, for the operator)."""
        ...

    @property
    def outage_since(self) -> float | None:
        """When (Unix time) the backend stopped taking writes; ``None`` while it takes them."""
        ...

    def stats(self) -> StoreStats:
        """Counts, sizes and health, for ``/metrics``, ``/health`` and ``wabot store stats``."""
        ...


class Housekeeping(Protocol):
    """The operator's commands on a backend (``wabot store ...``, tests, benchmarks).

    Periodic housekeeping runs inside the backend by itself; these run it now.
    """

    async def compact(self) -> None:
        """Fold what the backend logged since its last snapshot into a new snapshot.

        Raises:
          StoreUnavailable: the backend is unhealthy or closed.
          OSError: the snapshot could not be written; the previous one is kept.
        """
        ...

    async def backup(self, kind: str = "manual") -> Path:
        """Write a copy of every record, in the snapshot's keyed JSON format; returns its path.

        ``kind`` is lowercase letters, digits and dashes ("manual", "hourly", "pre-import");
        the oldest backups of each kind beyond its configured count are deleted.
        """
        ...

    async def maintain(self) -> None:
        """One pass of the periodic housekeeping (dedupe window, compaction, backups,
        retention)."""
        ...
