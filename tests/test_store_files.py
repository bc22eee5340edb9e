"""The data files: torn tails, corruption, quarantine, restore, the data-directory lock."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import attrs
import pytest
import trio

from store import (
    DataDirLocked,
    InboxEntry,
    StoreConfig,
    StoreCorrupt,
    UserRecord,
    open_store,
)
from store.cli import main as cli
from store.records import utcnow

REPO = Path(__file__).resolve().parents[1]


def record(user_id: str, name: str = "n") -> UserRecord:
    return attrs.evolve(UserRecord.new(user_id, f"{user_id}@s.whatsapp.net", "u"), name=name)


async def fill(config: StoreConfig, users: int = 3, name: str = "n") -> None:
    async with open_store(config) as store:
        for i in range(users):
            await store.put(record(f"u{i}", name))


async def test_torn_journal_tail_is_dropped_and_cut(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = StoreConfig(data_dir=tmp_path)
    async with open_store(config) as store:
        await store.compact()
        await store.put(record("u1", "kept"))
        store._healthy = False  # no final snapshot: the journal is the only copy
    journal = tmp_path / "journal.jsonl"
    good = journal.read_bytes()
    journal.write_bytes(good + b'{"seq":99,"op":"put","user":"u2","rec')
    async with open_store(config) as store:
        assert store.get("u1").name == "kept"  # type: ignore[union-attr]
        assert store.get("u2") is None
        assert "torn" in caplog.text
        assert journal.read_bytes() == good  # cut back before anything is appended
        await store.put(record("u3"))
    async with open_store(config) as store:
        assert store.get("u3") is not None


async def test_corrupt_journal_line_refuses_start(tmp_path: Path) -> None:
    config = StoreConfig(data_dir=tmp_path)
    async with open_store(config) as store:
        await store.compact()
        await store.put(record("u1"))
        await store.put(record("u2"))
        store._healthy = False
    journal = tmp_path / "journal.jsonl"
    lines = journal.read_bytes().split(b"\n")
    lines[0] = b"#garbage#"
    journal.write_bytes(b"\n".join(lines))
    with pytest.raises(StoreCorrupt) as info:
        async with open_store(config):
            pass
    assert "journal.jsonl line 1" in str(info.value)
    assert "wabot store restore" in str(info.value) or "no valid backup" in str(info.value)


async def test_missing_journal_segment_is_detected(tmp_path: Path) -> None:
    config = StoreConfig(data_dir=tmp_path)
    async with open_store(config) as store:
        await store.compact()
        for i in range(3):
            await store.put(record(f"u{i}"))
        store._healthy = False
    journal = tmp_path / "journal.jsonl"
    lines = journal.read_bytes().split(b"\n")
    journal.write_bytes(b"\n".join(lines[1:]))  # the first entry went missing
    with pytest.raises(StoreCorrupt, match="entries are missing"):
        async with open_store(config):
            pass


async def test_corrupt_snapshot_refuses_names_backup_then_restore(tmp_path: Path) -> None:
    config = StoreConfig(data_dir=tmp_path)
    async with open_store(config) as store:
        for i in range(5):
            await store.put(record(f"u{i}", "old"))
        backup = await store.backup("daily")
        await store.put(record("u0", "newer"))  # only in the snapshot that gets damaged
        await store.inbox_add([InboxEntry("m1", "u0", utcnow(), {"id": "m1"})])
    (tmp_path / "threads-data.json").write_bytes(b'{\n"u0": {"chatId": "x", trunc')
    with pytest.raises(StoreCorrupt) as info:
        async with open_store(config):
            pass
    message = str(info.value)
    assert "threads-data.json" in message
    assert str(backup) in message
    assert f"wabot store restore {backup}" in message
    assert await trio.to_thread.run_sync(cli, ["restore", str(backup)], config) == 0
    aside = list((tmp_path / "aside").glob("restore-*/threads-data.json"))
    assert len(aside) == 1  # the damaged file is kept, never deleted
    async with open_store(config) as store:
        assert len(store) == 5
        assert store.get("u0").name == "old"  # type: ignore[union-attr]
        assert [e.message_id for e in store.pending_inbox()] == ["m1"]


async def test_restore_round_trip_replays_newer_journal(tmp_path: Path) -> None:
    config = StoreConfig(data_dir=tmp_path)
    async with open_store(config) as store:
        await store.put(record("a", "1"))
        await store.put(record("b", "1"))
        backup = await store.backup()
        await store.put(record("a", "2"))
        await store.delete("b", "test")
        store._healthy = False  # the changes after the backup live only in the journal
    assert await trio.to_thread.run_sync(cli, ["restore", str(backup)], config) == 0
    async with open_store(config) as store:
        assert store.get("a").name == "2"  # type: ignore[union-attr]
        assert store.get("b") is None


async def test_restore_refuses_invalid_file(tmp_path: Path) -> None:
    config = StoreConfig(data_dir=tmp_path)
    await fill(config)
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2")
    assert await trio.to_thread.run_sync(cli, ["restore", str(bad)], config) == 1
    async with open_store(config) as store:
        assert len(store) == 3


async def test_invalid_records_are_quarantined(tmp_path: Path) -> None:
    config = StoreConfig(data_dir=tmp_path)
    await fill(config)
    snapshot = json.loads((tmp_path / "threads-data.json").read_text())
    snapshot["broken"] = {"chatId": "x", "createdAt": "yesterday"}
    snapshot["notadict"] = 5
    (tmp_path / "threads-data.json").write_text(json.dumps(snapshot, indent=2))
    async with open_store(config) as store:
        assert len(store) == 3
        assert store.stats().quarantined == 2
        await store.compact()
    lines = [json.loads(x) for x in (tmp_path / "quarantine.jsonl").read_text().splitlines()]
    assert {x["key"] for x in lines} == {"broken", "notadict"}
    assert all(x["reason"] for x in lines)
    async with open_store(config) as store:  # quarantined once, not at every start
        assert store.stats().quarantined == 2


async def test_original_keyed_file_loads_as_snapshot(tmp_path: Path) -> None:
    """The documented keyed threads-data.json (pretty-printed, no inbox.json) is readable."""
    (tmp_path / "threads-data.json").write_text(
        json.dumps(
            {
                "573001234567": {
                    "threadId": "thread_abc123",
                    "chatId": "573001234567@s.whatsapp.net",
                    "userName": "Juan Pérez",
                    "createdAt": "2025-07-28T10:30:00Z",
                    "lastActivity": "2025-07-28T15:45:00Z",
                    "labels": ["Consulta", "VIP"],
                }
            },
            indent=4,
            ensure_ascii=False,
        )
    )
    async with open_store(StoreConfig(data_dir=tmp_path)) as store:
        rec = store.get("573001234567")
        assert rec is not None
        assert rec.legacy_thread_id == "thread_abc123"
        assert rec.conversation_id is None
        assert rec.labels == ("Consulta", "VIP")


async def test_second_process_is_refused(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys, trio
        from pathlib import Path
        from store import DataDirLocked, StoreConfig, open_store
        async def main():
            try:
                async with open_store(StoreConfig(data_dir=Path({str(tmp_path)!r}))):
                    pass
            except DataDirLocked as exc:
                print(exc)
                sys.exit(3)
        trio.run(main)
        """
    )
    async with open_store(StoreConfig(data_dir=tmp_path)):
        result = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=60
        )
        assert result.returncode == 3, result.stderr
        assert "one process per data directory" in result.stdout
        assert str(tmp_path / ".lock") in result.stdout
        with pytest.raises(DataDirLocked):  # another open in the same process too
            async with open_store(StoreConfig(data_dir=tmp_path)):
                pass
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert result.returncode == 0, result.stderr


async def test_restore_salvages_journal_before_damage(tmp_path: Path) -> None:
    config = StoreConfig(data_dir=tmp_path)
    async with open_store(config) as store:
        await store.put(record("a", "1"))
        backup = await store.backup()
        await store.put(record("a", "2"))
        await store.put(record("b", "1"))
        await store.put(record("c", "1"))
        store._healthy = False
    journal = tmp_path / "journal.jsonl"
    lines = journal.read_bytes().split(b"\n")
    lines[1] = b"\x00garbage"
    journal.write_bytes(b"\n".join(lines))
    (tmp_path / "inbox.json").write_text("{broken")
    with pytest.raises(StoreCorrupt):
        async with open_store(config):
            pass
    assert await trio.to_thread.run_sync(cli, ["restore", str(backup)], config) == 0
    async with open_store(config) as store:
        assert store.get("a").name == "2"  # type: ignore[union-attr]  # line 1 kept
        assert store.get("b") is None  # the damaged line and what followed are set aside
    kept = list((tmp_path / "aside").glob("restore-*/*"))
    assert {p.name for p in kept} == {"journal.jsonl", "inbox.json", "threads-data.json"}
