"""Crash suite: SIGKILL a real writer process at random moments, restart, check everything.

Cycles: 24 in ``make test``, 200 in ``make crash`` and ``make chaos``;
``WABOT_STORE_CRASH_CYCLES`` overrides. Each cycle
starts ``store_helpers/writer.py`` on the same data directory, kills it after a random delay
(sometimes while it loads, often during a compaction), then loads the files read-only and
checks that every acknowledged put, inbox entry and done mark is there.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import trio

from store import InboxStatus, StoreConfig, open_store
from store.layout import DataFiles
from store.loader import load
from tests.chaos_helpers import scale

REPO = Path(__file__).resolve().parents[1]
WRITER = Path(__file__).resolve().parent / "store_helpers" / "writer.py"
CYCLES = scale(24, 200, env="WABOT_STORE_CRASH_CYCLES")


def read_acks(path: Path) -> list[list[str]]:
    text = path.read_text() if path.exists() else ""
    complete = text[: text.rfind("\n") + 1]  # a kill may cut the last line
    return [line.split() for line in complete.splitlines()]


def wait_for_ready(acks: Path, proc: subprocess.Popen[bytes], *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if any(op == "ready" for op, *_ in read_acks(acks)):
            return
        time.sleep(0.01)


def test_crash_sigkill_writer_loses_nothing_acknowledged(tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("WABOT_CRASH_SEED", "1")))
    data = tmp_path / "data"
    acked_put: dict[str, int] = {}
    acked_add: set[str] = set()
    acked_done: set[str] = set()
    totals = {"put": 0, "ready": 0}
    for cycle in range(CYCLES):
        acks = tmp_path / f"acks-{cycle}.txt"
        proc = subprocess.Popen(
            [sys.executable, str(WRITER), str(data), str(acks), str((cycle + 1) * 10_000_000)],
            cwd=REPO,
            stderr=subprocess.DEVNULL,
        )
        if cycle % 2:
            # Every other cycle waits for the writer to be ready first, so that kills land
            # in its traffic and compactions however slowly a busy machine starts Python.
            wait_for_ready(acks, proc, timeout=20)
            time.sleep(rng.uniform(0.05, 0.6))
        else:
            time.sleep(rng.uniform(0.15, 0.9))  # often while it still loads
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        for op, *args in read_acks(acks):
            if op == "ready":
                totals["ready"] += 1
            elif op == "put":
                totals["put"] += 1
                acked_put[args[0]] = max(acked_put.get(args[0], 0), int(args[1]))
            elif op == "add":
                acked_add.add(args[0])
            elif op == "done":
                acked_done.add(args[0])
        # Read-only load of exactly what the killed process left behind.
        loaded = load(DataFiles(data), 7 * 86400.0, 1_000_000, time.time())
        state = loaded.state
        for user_id, version in acked_put.items():
            record = state.get(user_id)
            assert record is not None, f"cycle {cycle}: acknowledged user {user_id} missing"
            assert int(record.name[1:]) >= version, f"cycle {cycle}: {user_id} went back"
        for message_id in acked_add:
            known = message_id in state.pending or state.done.get(message_id, time.time())
            assert known, f"cycle {cycle}: acknowledged message {message_id} lost"
        for message_id in acked_done:
            assert message_id not in state.pending, f"cycle {cycle}: {message_id} not done"
            assert state.done.get(message_id, time.time()) is not None
        assert not loaded.quarantined
    assert totals["ready"] >= CYCLES // 2, "the writer rarely got started: kill window too short"
    assert totals["put"] > CYCLES * 10, "too little traffic to mean anything"

    async def final_check() -> None:
        async with open_store(StoreConfig(data_dir=data)) as store:
            for message_id in acked_done:
                assert store.inbox_status(message_id) is InboxStatus.DONE
            for user_id, version in acked_put.items():
                assert int(store.get(user_id).name[1:]) >= version  # type: ignore[union-attr]

    trio.run(final_check)
    print(
        f"\nstore crash: {CYCLES} kills, {totals['put']} puts, {len(acked_add)} inbox adds and "
        f"{len(acked_done)} done marks acknowledged, 0 lost"
    )
