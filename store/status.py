"""What the store reports: the status of an inbox message id, and the store's statistics."""

from __future__ import annotations

import enum

import attrs

from store.disktime import DurationSummary


class InboxStatus(enum.Enum):
    """Where an inbound message id stands in the durable inbox."""

    #: Never seen, or done so long ago that it left the dedupe window.
    NEW = "new"
    #: Journaled, not yet answered (replayed into its actor after a restart).
    PENDING = "pending"
    #: Answered or dropped; remembered for the dedupe window.
    DONE = "done"


@attrs.frozen
class StoreStats:
    records: int
    pending: int
    done_ids: int
    journal_bytes: int
    snapshot_bytes: int
    last_commit_seconds: float
    #: The journal's write + fsync times, as the disk took them (``store.disktime``).
    journal_syncs: DurationSummary
    commits: int
    mutations: int
    compactions: int
    last_compaction_seconds: float
    backups: int
    healthy: bool
    #: When (Unix time) the store stopped taking writes; None while it takes them.
    outage_since: float | None = None
    quarantined: int = 0
    last_error: str | None = None
    journal_seq: int = 0
    snapshot_seq: int = 0
