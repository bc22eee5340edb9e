"""Temporary media files: unguessable names, removal in ``finally``, sweeps by age and size."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import trio

from store.tempfiles import TempFiles


async def test_file_is_removed_even_on_error(tmp_path: Path) -> None:
    temp = TempFiles(tmp_path / "audio", max_total_bytes=1 << 20, max_age_seconds=60)
    seen: list[Path] = []
    with pytest.raises(RuntimeError):
        async with temp.file(".ogg") as path:
            path.write_bytes(b"voice")
            seen.append(path)
            raise RuntimeError("transcription failed")
    assert not seen[0].exists()
    assert seen[0].parent == tmp_path / "audio" and seen[0].suffix == ".ogg"
    async with temp.file(".mp3") as a, temp.file(".mp3") as b:
        assert a != b and len(a.stem) >= 16
    with pytest.raises(ValueError):
        async with temp.file("/../x"):
            pass


def test_sweep_by_age_then_size(tmp_path: Path) -> None:
    temp = TempFiles(tmp_path, max_total_bytes=250, max_age_seconds=60)
    now = time.time()
    for i, age in enumerate([600, 30, 20, 10]):
        path = tmp_path / f"f{i}.ogg"
        path.write_bytes(b"x" * 100)
        os.utime(path, (now - age, now - age))
    assert temp.sweep() == 2  # f0 (too old), then f1 (oldest while over 250 bytes)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f2.ogg", "f3.ogg"]
    assert TempFiles(tmp_path / "missing", 1, 1).sweep() == 0


async def test_run_sweeps_at_start_and_on_interval(tmp_path: Path) -> None:
    temp = TempFiles(tmp_path, max_total_bytes=1 << 20, max_age_seconds=0.05)
    (tmp_path / "leftover.ogg").write_bytes(b"x")
    old = time.time() - 10
    os.utime(tmp_path / "leftover.ogg", (old, old))
    async with trio.open_nursery() as nursery:
        await nursery.start(temp.run, 0.05)
        assert not (tmp_path / "leftover.ogg").exists()
        (tmp_path / "later.ogg").write_bytes(b"x")
        await trio.sleep(0.3)
        assert not (tmp_path / "later.ogg").exists()
        nursery.cancel_scope.cancel()
