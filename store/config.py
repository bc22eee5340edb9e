"""The store's settings: where the data lives, compaction, dedupe, backups and retention."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import attrs

from store.fileio import FileIO


@attrs.frozen
class StoreConfig:
    """Every limit and timing of the store; the lead builds it from the wabot settings."""

    data_dir: Path = attrs.field(converter=Path)
    #: Compaction trigger: journal size.
    journal_max_bytes: int = 64 * 1024 * 1024
    #: Compaction trigger: age of the oldest journal entry not yet in a snapshot.
    journal_max_age_seconds: float = 3600.0
    #: How long the ids of done messages are remembered (redelivery dedupe).
    dedupe_window_seconds: float = 7 * 86400.0
    #: Hard bound on remembered done ids; the oldest are forgotten first.
    dedupe_max_ids: int = 1_000_000
    backups_hourly: int = 24
    backups_daily: int = 7
    #: How many on-demand backups (manual, pre-restore, pre-import) are kept.
    backups_manual: int = 10
    #: Records inactive longer than this are removed by the periodic cleanup.
    retention_days: float = 180.0
    #: How often the store checks compaction, backups, retention and dedupe pruning.
    maintenance_interval_seconds: float = 60.0
    #: After a failed write, how long to wait between attempts to re-persist and reopen.
    recovery_retry_seconds: float = 5.0
    #: Bound on writes accepted but not yet committed; past it, writers wait.
    max_queued_writes: int = 10_000
    #: After loading at least this many records, ``gc.freeze()`` moves the loaded heap out of
    #: the cyclic GC's reach, so full collections stop rescanning millions of long-lived
    #: records (records hold no cycles; they are still freed by reference counting).
    gc_freeze_min_records: int = 10_000
    #: While a long journal replays at start, a progress line is logged this often.
    replay_progress_seconds: float = 2.0
    #: Wall clock (seconds since the epoch); tests pass a fake one.
    clock: Callable[[], float] = time.time
    #: File operations (the fault-injection seam).
    io: FileIO = attrs.field(factory=FileIO)
