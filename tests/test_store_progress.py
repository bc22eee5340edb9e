"""Start-up progress: a long journal replay says how far it is, and the load ends with one line.

The progress interval and the clock are injectable (``store.loader.load``), so the first test
counts the lines exactly with a clock that advances one second per reading; the second runs
the store's own open path on a journal large enough to take measurable time.
"""

from __future__ import annotations

import itertools
import logging
import re
import time
from pathlib import Path

import pytest

from store import StoreConfig, UserRecord, open_store
from store.journal import frame
from store.layout import DataFiles
from store.loader import load
from store.state import encode_put

PROGRESS = re.compile(r"replaying the journal: (\d+) of (\d+) entries \((\d+)%\)")
LOADED = re.compile(r"store loaded: (\d+) records, (\d+) journal entries in ([\d.]+) s")


def write_journal(data_dir: Path, entries: int) -> None:
    """A journal of ``entries`` puts, one user each, as the store writes them."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir / "journal.jsonl").open("wb") as journal:
        for seq in range(1, entries + 1):
            user = f"5730{seq:08d}"
            record = UserRecord.new(user, f"{user}@s.whatsapp.net", "u")
            journal.write(frame(seq, encode_put(record)))


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "store.loader"]


def test_replay_progress_lines_follow_the_interval(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="store.loader")
    write_journal(tmp_path, 5000)
    ticks = itertools.count()  # one second per reading of the clock
    loaded = load(
        DataFiles(tmp_path),
        86400.0,
        100_000,
        time.time(),
        progress_seconds=2.0,
        clock=lambda: float(next(ticks)),
    )
    assert loaded.replayed == 5000 and len(loaded.state.records) == 5000
    lines = messages(caplog)
    # The clock is read every 1024 lines (1 s each): a line at 2048 and at 4096 entries.
    progress = [tuple(map(int, m.groups())) for line in lines if (m := PROGRESS.search(line))]
    assert progress == [(2048, 5000, 40), (4096, 5000, 81)]
    final = [m.groups() for line in lines if (m := LOADED.search(line))]
    assert final == [("5000", "5000", "5.0")]
    assert lines[-1].startswith("store loaded: ")


async def test_store_open_logs_progress_of_a_long_replay(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="store.loader")
    entries = 30_000
    write_journal(tmp_path, entries)
    config = StoreConfig(tmp_path, replay_progress_seconds=0.01)
    started = time.monotonic()
    async with open_store(config) as store:
        took = time.monotonic() - started
        assert store.stats().records == entries
    lines = messages(caplog)
    progress = [tuple(map(int, m.groups())) for line in lines if (m := PROGRESS.search(line))]
    assert progress, f"no progress line in a replay that took {took:.2f} s: {lines}"
    done = [n for n, _, _ in progress]
    assert done == sorted(done) and all(total == entries for _, total, _ in progress)
    assert all(0 < n < entries for n in done)
    (final,) = [m.groups() for line in lines if (m := LOADED.search(line))]
    assert final[:2] == (str(entries), str(entries)) and 0 <= float(final[2]) <= took + 0.1
