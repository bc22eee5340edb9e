"""The journal's sync times (``store.disktime``): what a slow disk looks like in the stats."""

from __future__ import annotations

import time
from pathlib import Path

import attrs
import trio

from store import StoreConfig, UserRecord, open_store
from store.disktime import DurationHistogram
from store.fileio import FileIO


def test_buckets_are_cumulative_and_an_edge_value_counts_as_at_or_under() -> None:
    histogram = DurationHistogram(bounds=(0.001, 0.01))
    for seconds in (0.0002, 0.001, 0.005, 0.02, 3.0):
        histogram.observe(seconds)
    summary = histogram.summary()
    assert summary.buckets == ((0.001, 2), (0.01, 3))
    assert summary.count == 5
    assert abs(summary.total_seconds - 3.0262) < 1e-9


@attrs.define
class SlowFsyncIO(FileIO):
    """Every fsync of a file takes ``delay`` seconds longer, as a stalling disk's would."""

    delay: float = 0.0

    def fsync(self, fd: int) -> None:
        time.sleep(self.delay)
        super().fsync(fd)


async def test_a_stalling_disk_shows_in_the_journal_sync_times(tmp_path: Path) -> None:
    io = SlowFsyncIO()
    async with open_store(StoreConfig(data_dir=tmp_path, io=io)) as store:
        user = UserRecord.new("u1", "u1@s.whatsapp.net", "user")
        await store.put(user)
        before = store.stats().journal_syncs
        io.delay = 0.06
        # Three writes at once share one sync (group commit) or take a few; each is slow.
        async with trio.open_nursery() as nursery:
            for index in range(3):
                nursery.start_soon(store.put, attrs.evolve(user, name=f"v{index}"))
        after = store.stats().journal_syncs
        slow = dict(after.buckets)
        commits = after.count - before.count
        assert 1 <= commits <= 3
        assert after.count - slow[0.05] == commits  # every one of them over 50 ms
        assert after.total_seconds - before.total_seconds >= 0.06 * commits
