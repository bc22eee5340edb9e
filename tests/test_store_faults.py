"""Fault injection through ``FileIO``: EIO, ENOSPC, short writes, power cuts."""

from __future__ import annotations

import errno
import random
from pathlib import Path

import attrs
import pytest
import trio

from store import InboxEntry, InboxStatus, StoreConfig, StoreUnavailable, UserRecord, open_store
from store.records import utcnow
from store.snapshot import read_records
from tests.store_helpers.faults import Fault, FaultyIO, PowerCutIO


def record(user_id: str, version: int) -> UserRecord:
    base = UserRecord.new(user_id, f"{user_id}@s.whatsapp.net", "user")
    return attrs.evolve(base, name=f"v{version}")


def version(rec: UserRecord | None) -> int:
    return -1 if rec is None or rec.name is None else int(rec.name[1:])


def entry(message_id: str) -> InboxEntry:
    return InboxEntry(message_id, "u1", utcnow(), {"id": message_id})


async def wait_healthy(store: object, timeout: float = 5.0) -> None:
    with trio.fail_after(timeout):
        while not store.healthy:  # type: ignore[attr-defined]
            await trio.sleep(0.01)


def config(tmp_path: Path, io: FaultyIO, **kw: object) -> StoreConfig:
    return StoreConfig(data_dir=tmp_path, io=io, recovery_retry_seconds=0.02, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "fault",
    [
        Fault("fsync", errno.EIO, match="journal"),
        Fault("write", errno.ENOSPC, match="journal"),
        Fault("write", errno.ENOSPC, match="journal", short=True),
    ],
    ids=["eio-fsync", "enospc-write", "short-write"],
)
async def test_journal_failure_fails_callers_then_recovers(tmp_path: Path, fault: Fault) -> None:
    io = FaultyIO()
    async with open_store(config(tmp_path, io)) as store:
        await store.compact()
        await store.put(record("u1", 1))
        await store.inbox_add([entry("m1")])
        io.arm(fault)
        with pytest.raises(StoreUnavailable):
            await store.put(record("u1", 2))
        assert fault.hits == 1
        assert version(store.get("u1")) == 1  # the failed write was undone in memory
        # Recovery may already have written a fresh snapshot: whichever is on disk, the failed
        # write is not in it.
        on_disk = read_records(tmp_path / "threads-data.json").records
        assert version(on_disk["u1"]) == 1
        await wait_healthy(store)  # recovery: fresh snapshot + new journal
        assert store.stats().healthy
        await store.put(record("u1", 3))
        assert await store.inbox_add([entry("m1"), entry("m2")]) == [
            InboxStatus.PENDING,
            InboxStatus.NEW,
        ]
        journal = (tmp_path / "journal.jsonl").read_bytes()
        assert journal.endswith(b"\n")  # no torn line left for later appends
    async with open_store(config(tmp_path, FaultyIO())) as store:
        assert version(store.get("u1")) == 3
        assert [e.message_id for e in store.pending_inbox()] == ["m1", "m2"]


async def test_failure_undoes_every_queued_writer(tmp_path: Path) -> None:
    io = FaultyIO()
    async with open_store(config(tmp_path, io)) as store:
        for i in range(10):
            await store.put(record(f"u{i}", 0))
        io.arm(Fault("fsync", errno.EIO, match="journal"))
        results: list[bool] = []

        async def writer(i: int) -> None:
            try:
                await store.put(record(f"u{i}", 1))
                results.append(True)
            except StoreUnavailable:
                results.append(False)

        async with trio.open_nursery() as nursery:
            for i in range(10):
                nursery.start_soon(writer, i)
        failed = results.count(False)
        assert failed >= 1
        # Every write that failed is undone; nothing half-applied remains in memory.
        assert sum(version(store.get(f"u{i}")) == 1 for i in range(10)) == results.count(True)
        await wait_healthy(store)
        expected = {f"u{i}": version(store.get(f"u{i}")) for i in range(10)}
    async with open_store(config(tmp_path, FaultyIO())) as store:
        assert {f"u{i}": version(store.get(f"u{i}")) for i in range(10)} == expected


async def test_unhealthy_until_recovery_succeeds(tmp_path: Path) -> None:
    io = FaultyIO()
    async with open_store(config(tmp_path, io)) as store:
        await store.put(record("u1", 1))
        await store.compact()
        snapshot_before = (tmp_path / "threads-data.json").read_bytes()
        io.arm(Fault("fsync", errno.EIO, times=-1))  # the disk is gone, snapshots fail too
        with pytest.raises(StoreUnavailable):
            await store.put(record("u1", 2))
        await trio.sleep(0.2)  # several recovery attempts, all failing
        assert not store.healthy
        assert "EIO" in (store.last_error or "") or "Input/output" in (store.last_error or "")
        with pytest.raises(StoreUnavailable):
            await store.put(record("u1", 3))  # refused fast while unhealthy
        with pytest.raises(StoreUnavailable):
            await store.inbox_add([entry("m1")])
        assert (tmp_path / "threads-data.json").read_bytes() == snapshot_before
        # Failed temp files are cleaned up. Recovery keeps retrying in a worker thread, so an
        # attempt may have its temp file open at any instant: a cleaned-up one is seen gone
        # between attempts, a leaked one never is (every attempt uses the same name).
        with trio.fail_after(5):
            while list(tmp_path.glob(".*.tmp")):
                await trio.sleep(0.001)
        io.disarm()
        await wait_healthy(store)
        await store.put(record("u1", 4))
    async with open_store(config(tmp_path, FaultyIO())) as store:
        assert version(store.get("u1")) == 4


async def test_enospc_during_compaction_keeps_old_snapshot(tmp_path: Path) -> None:
    io = FaultyIO()
    async with open_store(config(tmp_path, io)) as store:
        await store.put(record("u1", 1))
        await store.compact()
        before = (tmp_path / "threads-data.json").read_bytes()
        await store.put(record("u1", 2))
        io.arm(Fault("write", errno.ENOSPC, match="threads-data", short=True))
        with pytest.raises(OSError):
            await store.compact()
        assert (tmp_path / "threads-data.json").read_bytes() == before
        assert store.healthy  # the journal still works: nothing is lost
        await store.put(record("u1", 3))
        io.disarm()
        await store.compact()
        assert not (tmp_path / "journal.old.jsonl").exists()
    async with open_store(config(tmp_path, FaultyIO())) as store:
        assert version(store.get("u1")) == 3


async def test_rotation_failure_recovers(tmp_path: Path) -> None:
    io = FaultyIO()
    async with open_store(config(tmp_path, io)) as store:
        await store.compact()
        await store.put(record("u1", 1))
        io.arm(Fault("open", errno.ENOSPC, match="journal.jsonl"))
        with pytest.raises(StoreUnavailable):
            await store.compact()
        await wait_healthy(store)
        await store.put(record("u1", 2))
    async with open_store(config(tmp_path, FaultyIO())) as store:
        assert version(store.get("u1")) == 2


async def test_power_cut_loses_nothing_acknowledged(tmp_path: Path) -> None:
    """Forget every un-fsynced byte at random moments (also mid-compaction), many times."""
    rng = random.Random(7)
    acked: dict[str, int] = {}
    acked_msgs: set[str] = set()
    done_msgs: set[str] = set()
    next_version = 0
    for cycle in range(12):
        io = PowerCutIO(tmp_path, seed=cycle)
        cfg = config(tmp_path, io, journal_max_bytes=8 * 1024)
        async with open_store(cfg) as store:
            for user_id, v in acked.items():
                assert version(store.get(user_id)) >= v, (cycle, user_id)
            for message_id in acked_msgs:
                assert store.inbox_status(message_id) is not InboxStatus.NEW, message_id
            for message_id in done_msgs:
                assert store.inbox_status(message_id) is InboxStatus.DONE, message_id

            async def traffic(worker: int) -> None:
                nonlocal next_version
                while True:
                    next_version += 1
                    v = next_version
                    user_id = f"u{worker}-{rng.randrange(20)}"
                    try:
                        await store.put(record(user_id, v))
                    except StoreUnavailable:
                        return
                    acked[user_id] = max(acked.get(user_id, -1), v)
                    message_id = f"m{v}"
                    try:
                        await store.inbox_add([entry(message_id)])
                        acked_msgs.add(message_id)
                        if v % 2:
                            await store.inbox_done([message_id], "replied")
                            done_msgs.add(message_id)
                    except StoreUnavailable:
                        return

            async with trio.open_nursery() as nursery:
                for worker in range(4):
                    nursery.start_soon(traffic, worker)
                await trio.sleep(rng.uniform(0.01, 0.15))
                io.power_cut(torn=True)
            assert not store.healthy
    async with open_store(config(tmp_path, FaultyIO())) as store:
        for user_id, v in acked.items():
            assert version(store.get(user_id)) >= v
        assert all(store.inbox_status(m) is not InboxStatus.NEW for m in acked_msgs)


async def test_a_turns_end_is_one_write_and_fails_as_one(tmp_path: Path) -> None:
    """The record and the marks of a turn's end share one fsync, and are undone together."""
    io = FaultyIO()
    async with open_store(config(tmp_path, io)) as store:
        await store.put(record("u1", 1))
        await store.inbox_add([entry("m1"), entry("m2")])
        commits = store.stats().commits
        await store.inbox_done(["m1"], "replied", record=record("u1", 2))
        assert store.stats().commits == commits + 1
        assert version(store.get("u1")) == 2
        assert store.inbox_status("m1") is InboxStatus.DONE
        fault = Fault("fsync", errno.EIO, match="journal")
        io.arm(fault)
        with pytest.raises(StoreUnavailable):
            await store.inbox_done(["m2"], "replied", record=record("u1", 3))
        assert version(store.get("u1")) == 2
        assert store.inbox_status("m2") is InboxStatus.PENDING
        await wait_healthy(store)
        await store.inbox_done([], "replied", record=record("u1", 4))  # a record alone
    async with open_store(config(tmp_path, FaultyIO())) as store:
        assert version(store.get("u1")) == 4
        assert store.inbox_status("m1") is InboxStatus.DONE
        assert [e.message_id for e in store.pending_inbox()] == ["m2"]
