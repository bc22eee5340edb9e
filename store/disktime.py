"""How long the disk takes to make the journal durable: a histogram of write + fsync times.

Each group commit's ``write`` and ``fsync`` are timed in the worker thread that runs them, so
the figure is the disk's (and the kernel's), without the wait for a thread or for the event
loop to pick the result up. The service exports it as ``wabot_store_journal_sync_seconds``.
Every inbound message waits for one of these before its webhook is answered and its turn
starts, so this is where an operator sees a stalling disk: commits slow while syncs stay fast
mean a busy process; syncs slow mean the disk.
"""

from __future__ import annotations

import bisect

import attrs

#: Upper bounds (seconds). A healthy local disk syncs in well under a millisecond to a few;
#: the long buckets are for the stalls of shared virtual disks.
SYNC_BUCKETS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)


@attrs.frozen
class DurationSummary:
    """A histogram's state as Prometheus wants it: cumulative counts per upper bound."""

    #: ``(upper bound, observations at or under it)``, ascending, without +Inf.
    buckets: tuple[tuple[float, int], ...]
    count: int
    total_seconds: float


@attrs.define
class DurationHistogram:
    """Counts of durations by bucket; observed from the event loop's thread only."""

    bounds: tuple[float, ...] = SYNC_BUCKETS
    #: One count per bound, then one for everything above the last (not cumulative).
    counts: list[int] = attrs.field()
    total_seconds: float = 0.0

    @counts.default
    def _zeros(self) -> list[int]:
        return [0] * (len(self.bounds) + 1)

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.total_seconds += seconds

    def summary(self) -> DurationSummary:
        running = 0
        buckets: list[tuple[float, int]] = []
        for bound, count in zip(self.bounds, self.counts, strict=False):
            running += count
            buckets.append((bound, running))
        return DurationSummary(tuple(buckets), running + self.counts[-1], self.total_seconds)
