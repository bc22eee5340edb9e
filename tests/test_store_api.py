"""The store's API: reads, writes, the durable inbox and dedupe, reload round trips."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
import trio

from store import (
    InboxEntry,
    InboxStatus,
    StoreConfig,
    StoreUnavailable,
    UserRecord,
    open_store,
)
from store.records import utcnow


def record(user_id: str, **changes: object) -> UserRecord:
    base = UserRecord.new(user_id, f"{user_id}@s.whatsapp.net", f"name {user_id}")
    return base if not changes else _evolve(base, changes)


def _evolve(base: UserRecord, changes: dict[str, object]) -> UserRecord:
    import attrs

    return attrs.evolve(base, **changes)


def entry(message_id: str, user_id: str = "u1", text: str = "hola") -> InboxEntry:
    return InboxEntry(message_id, user_id, utcnow(), {"id": message_id, "text": {"body": text}})


async def test_put_get_delete_and_reload(tmp_path: Path) -> None:
    config = StoreConfig(data_dir=tmp_path)
    async with open_store(config) as store:
        assert store.get("u1") is None
        await store.put(record("u1", conversation_id="conv_1", labels=("VIP",)))
        await store.put(record("u2"))
        await store.put(record("u2", name="Juan"))  # last writer wins
        await store.put(record("u3"))
        await store.delete("u3", reason="test")
        await store.delete("nobody", reason="absent is fine")
        assert len(store) == 2
        assert store.get("u1").conversation_id == "conv_1"  # type: ignore[union-attr]
        assert {r.user_id for r in store.records()} == {"u1", "u2"}
    async with open_store(config) as store:
        assert len(store) == 2
        assert store.get("u2").name == "Juan"  # type: ignore[union-attr]
        assert store.get("u1").labels == ("VIP",)  # type: ignore[union-attr]
        assert store.get("u3") is None
    snapshot = json.loads((tmp_path / "threads-data.json").read_text())
    assert set(snapshot) == {"u1", "u2"}
    assert snapshot["u1"]["chatId"] == "u1@s.whatsapp.net"
    assert snapshot["u1"]["conversationId"] == "conv_1"


async def test_reload_from_journal_without_final_snapshot(tmp_path: Path) -> None:
    """Acknowledged writes are in the journal even if the process never closes the store."""
    config = StoreConfig(data_dir=tmp_path)
    async with open_store(config) as store:
        await store.compact()
        await store.put(record("u1", name="first"))
        store._closing = True  # simulate a crash: skip the final snapshot below
        store._healthy = False
    assert (tmp_path / "journal.jsonl").stat().st_size > 0
    async with open_store(config) as store:
        assert store.get("u1").name == "first"  # type: ignore[union-attr]


async def test_inbox_statuses_dedupe_and_order(tmp_path: Path) -> None:
    config = StoreConfig(data_dir=tmp_path)
    async with open_store(config) as store:
        statuses = await store.inbox_add([entry("m1"), entry("m2", "u2"), entry("m1")])
        assert statuses == [InboxStatus.NEW, InboxStatus.NEW, InboxStatus.PENDING]
        assert await store.inbox_add([entry("m1"), entry("m3")]) == [
            InboxStatus.PENDING,
            InboxStatus.NEW,
        ]
        assert [e.message_id for e in store.pending_inbox()] == ["m1", "m2", "m3"]
        await store.inbox_done(["m2"], "replied")
        assert store.inbox_status("m2") is InboxStatus.DONE
        assert store.inbox_status("m9") is InboxStatus.NEW
        assert await store.inbox_add([entry("m2")]) == [InboxStatus.DONE]
        assert [e.message_id for e in store.pending_inbox()] == ["m1", "m3"]
    async with open_store(config) as store:
        assert [e.message_id for e in store.pending_inbox()] == ["m1", "m3"]
        assert store.pending_inbox()[0].payload["text"]["body"] == "hola"
        assert store.inbox_status("m2") is InboxStatus.DONE
        await store.inbox_done(["m1", "m3"], "dropped:group")
        assert store.pending_inbox() == []
    async with open_store(config) as store:
        assert store.pending_inbox() == []
        assert store.inbox_status("m3") is InboxStatus.DONE


async def test_dedupe_window_and_bound(tmp_path: Path) -> None:
    now = [1_000_000.0]
    config = StoreConfig(
        data_dir=tmp_path, dedupe_window_seconds=100.0, dedupe_max_ids=32, clock=lambda: now[0]
    )
    async with open_store(config) as store:
        await store.inbox_add([entry("old")])
        await store.inbox_done(["old"], "replied")
        now[0] += 50
        assert store.inbox_status("old") is InboxStatus.DONE
        now[0] += 51
        assert store.inbox_status("old") is InboxStatus.NEW  # out of the window
        ids = [f"m{i}" for i in range(100)]
        await store.inbox_add([entry(i) for i in ids])
        await store.inbox_done(ids, "replied")
        assert store.stats().done_ids <= 32
        assert store.inbox_status("m99") is InboxStatus.DONE
        assert store.inbox_status("m0") is InboxStatus.NEW  # oldest forgotten first
        # Pending ids are never forgotten, whatever the bound.
        await store.inbox_add([entry(f"p{i}") for i in range(50)])
        assert len(store.pending_inbox()) == 50
        await store.maintain()
        assert len(store.pending_inbox()) == 50
    async with open_store(config) as store:
        assert len(store.pending_inbox()) == 50
        assert store.stats().done_ids <= 32
        assert store.inbox_status("m99") is InboxStatus.DONE


async def test_concurrent_writers_group_commit(tmp_path: Path) -> None:
    async with open_store(StoreConfig(data_dir=tmp_path)) as store:
        async with trio.open_nursery() as nursery:
            for i in range(500):
                nursery.start_soon(store.put, record(f"u{i}"))
        stats = store.stats()
        assert stats.records == 500
        assert stats.mutations == 500
        assert stats.commits < 500  # many writers, few fsyncs


async def test_compaction_by_size_keeps_everything(tmp_path: Path) -> None:
    config = StoreConfig(data_dir=tmp_path, journal_max_bytes=4096)
    async with open_store(config) as store:
        for round_ in range(5):
            async with trio.open_nursery() as nursery:
                for i in range(100):
                    nursery.start_soon(store.put, record(f"u{i}", name=f"r{round_}"))
            await trio.sleep(0.05)
        await store.compact()
        assert store.stats().compactions >= 2
        assert not (tmp_path / "journal.old.jsonl").exists()
    async with open_store(config) as store:
        assert len(store) == 100
        assert all(r.name == "r4" for r in store.records())


async def test_retention_only_from_maintenance(tmp_path: Path) -> None:
    now = [utcnow().timestamp()]
    config = StoreConfig(data_dir=tmp_path, retention_days=10, clock=lambda: now[0])
    old = utcnow() - timedelta(days=30)
    async with open_store(config) as store:
        await store.put(record("old", last_activity=old, created_at=old))
        await store.put(record("fresh"))
    async with open_store(config) as store:
        assert store.get("old") is not None  # never purged at boot
        await store.maintain()
        assert store.get("old") is None
        assert store.get("fresh") is not None
    async with open_store(config) as store:
        assert store.get("old") is None


async def test_maintenance_makes_rotating_backups(tmp_path: Path) -> None:
    now = [1_700_000_000.0]
    config = StoreConfig(data_dir=tmp_path, backups_hourly=3, backups_daily=2, clock=lambda: now[0])
    async with open_store(config) as store:
        await store.put(record("u1"))
        for _ in range(6):
            await store.maintain()
            now[0] += 3600
        manual = await store.backup()
        assert manual.exists()
    names = sorted(p.name for p in (tmp_path / "backups").iterdir())
    assert sum(".hourly." in n for n in names) == 3
    assert sum(".daily." in n for n in names) == 1
    assert sum(".manual." in n for n in names) == 1
    assert json.loads(manual.read_text())["u1"]["userName"] == "name u1"


async def test_writes_after_close_are_refused(tmp_path: Path) -> None:
    async with open_store(StoreConfig(data_dir=tmp_path)) as store:
        pass
    with pytest.raises(StoreUnavailable):
        await store.put(record("late"))


async def test_cancelled_writer_still_durable_or_absent(tmp_path: Path) -> None:
    config = StoreConfig(data_dir=tmp_path)
    async with open_store(config) as store:
        with trio.move_on_after(0):
            await store.put(record("maybe"))
        await store.put(record("sure"))
        maybe = store.get("maybe")
    async with open_store(config) as store:
        assert store.get("sure") is not None
        assert (store.get("maybe") is None) == (maybe is None)
