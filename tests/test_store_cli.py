"""``wabot store ...`` commands, including the legacy import of the original bot's files."""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import pytest
import trio

from store import StoreConfig, UserRecord, open_store
from store.cli import main as cli


async def run_cli(argv: list[str], config: StoreConfig) -> int:
    """The CLI is synchronous (``import`` runs its own trio loop): call it from a thread."""
    return await trio.to_thread.run_sync(cli, argv, config)


def record(user_id: str, **changes: object) -> UserRecord:
    return attrs.evolve(UserRecord.new(user_id, f"{user_id}@s.whatsapp.net", "u"), **changes)


THREAD = {
    "threadId": "thread_abc123",
    "chatId": "573001234567@s.whatsapp.net",
    "userName": "Sr Alex",
    "createdAt": "2025-07-26T20:59:01.429Z",
    "lastActivity": "2025-07-26T20:59:03.974Z",
    "name": "Alex",
    "labels": ["Colega Jefe", "cotización"],
}
GUEST = {
    "name": "Juan Pérez",
    "whapiLabels": [{"id": "1", "name": "Potencial"}, {"id": "2", "name": "Consulta"}],
    "lastInteraction": "2025-07-28T15:45:00Z",
}


async def test_read_only_commands_work_while_the_bot_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = StoreConfig(data_dir=tmp_path)
    async with open_store(config) as store:
        await store.put(record("573001", conversation_id="conv_9", user_name="Ana"))
        await store.put(record("573002"))
        capsys.readouterr()
        assert await run_cli(["stats"], config) == 0
        out = capsys.readouterr().out
        assert "records:          2" in out and "yes (lock held)" in out
        assert await run_cli(["list"], config) == 0
        out = capsys.readouterr().out
        assert "573001\t573001@s.whatsapp.net\tAna\t" in out and "conv_9" in out
        assert await run_cli(["list", "--json"], config) == 0
        listed = json.loads(capsys.readouterr().out)
        assert listed["573001"]["conversationId"] == "conv_9"
        assert set(listed["573001"]) >= {"chatId", "userName", "lastActivity", "createdAt"}
        assert await run_cli(["backup"], config) == 0
        out = capsys.readouterr().out
        assert "2 records" in out
        assert await run_cli(["verify"], config) == 0
        assert "verify: OK" in capsys.readouterr().out
        backup = next((tmp_path / "backups").iterdir())
        assert set(json.loads(backup.read_text())) == {"573001", "573002"}
        # Write commands refuse while the lock is held (exit 2).
        assert await run_cli(["restore", str(backup)], config) == 2
        assert "one process per data directory" in capsys.readouterr().err
        legacy = tmp_path / "threads.json"
        legacy.write_text("[]")
        assert await run_cli(["import", str(legacy)], config) == 2


async def test_verify_reports_corrupt_backup(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = StoreConfig(data_dir=tmp_path)
    async with open_store(config) as store:
        await store.put(record("u1"))
        path = await store.backup()
    path.write_text("{ nope")
    assert await run_cli(["verify"], config) == 1
    assert "CORRUPT backup" in capsys.readouterr().out


async def test_usage_errors_exit_2(tmp_path: Path) -> None:
    config = StoreConfig(data_dir=tmp_path)
    assert await run_cli(["frobnicate"], config) == 2
    assert await run_cli([], config) == 2


async def test_import_pair_array_threads_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    legacy = tmp_path / "legacy" / "tmp" / "threads.json"
    legacy.parent.mkdir(parents=True)
    legacy.write_text(
        json.dumps(
            [
                ["573001234567", THREAD],
                ["573009999999", {"threadId": "thread_x", "chatId": "573009999999@s.whatsapp.net"}],
                ["573008888888", {**THREAD, "chatId": None, "userName": None}],
                "not a pair",
            ],
            indent=2,
        )
    )
    config = StoreConfig(data_dir=tmp_path / "data")
    # PATH may be a directory: the known file names are looked for in it and in tmp/, data/.
    assert await run_cli(["import", str(tmp_path / "legacy")], config) == 0
    out = capsys.readouterr().out
    assert "created 2, updated 0, unchanged 0, invalid 2" in out
    async with open_store(config) as store:
        rec = store.get("573001234567")
        assert rec is not None
        assert rec.legacy_thread_id == "thread_abc123"
        assert rec.conversation_id is None  # the next message starts a fresh conversation
        assert rec.labels == ("Colega Jefe", "cotización")
        assert rec.user_name == "Sr Alex"
        migrated = store.get("573008888888")
        assert migrated is not None and migrated.chat_id == "573008888888@s.whatsapp.net"
        assert store.get("573009999999") is None  # no createdAt: invalid, quarantined
    quarantined = (tmp_path / "data" / "quarantine.jsonl").read_text().splitlines()
    assert len(quarantined) == 2
    # Idempotent.
    assert await run_cli(["import", str(legacy)], config) == 0
    assert "created 0, updated 0, unchanged 2, invalid 2" in capsys.readouterr().out


async def test_import_keyed_threads_data_merges(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = StoreConfig(data_dir=tmp_path / "data")
    async with open_store(config) as store:
        await store.put(record("573001234567", conversation_id="conv_live", labels=("VIP",)))
    legacy = tmp_path / "threads-data.json"
    legacy.write_text(json.dumps({"573001234567": THREAD, "573002": {**THREAD, "name": None}}))
    assert await run_cli(["import", str(legacy)], config) == 0
    assert "created 1, updated 1, unchanged 0, invalid 0" in capsys.readouterr().out
    async with open_store(config) as store:
        rec = store.get("573001234567")
        assert rec is not None
        assert rec.conversation_id == "conv_live"  # what wabot knows is kept
        assert rec.legacy_thread_id == "thread_abc123"
        assert rec.labels == ("VIP", "Colega Jefe", "cotización")
        assert rec.name == "Alex"
    assert list((tmp_path / "data" / "backups").glob("*.pre-import.*"))
    assert await run_cli(["import", str(legacy)], config) == 0
    assert "created 0, updated 0, unchanged 2" in capsys.readouterr().out


@pytest.mark.parametrize("layout", ["keyed", "pairs"])
async def test_import_guest_profiles(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], layout: str
) -> None:
    config = StoreConfig(data_dir=tmp_path / "data")
    async with open_store(config) as store:
        await store.put(record("573001234567", labels=("Consulta",)))
    profiles = {
        "573001234567": GUEST,
        "573005555555": {**GUEST, "name": None, "whapiLabels": []},
        "573006666666": {"name": "No time", "whapiLabels": []},
        "573007777777": {**GUEST, "whapiLabels": "oops"},
    }
    name = "guest-memory.json" if layout == "keyed" else "guest_profiles.json"
    legacy = tmp_path / name
    payload = profiles if layout == "keyed" else [[k, v] for k, v in profiles.items()]
    legacy.write_text(json.dumps(payload, ensure_ascii=False))
    assert await run_cli(["import", str(legacy)], config) == 0
    out = capsys.readouterr().out
    assert "created 1, updated 1, unchanged 0, invalid 2" in out
    async with open_store(config) as store:
        merged = store.get("573001234567")
        assert merged is not None
        assert merged.name == "Juan Pérez"
        assert merged.labels == ("Consulta", "Potencial")
        created = store.get("573005555555")
        assert created is not None and created.chat_id == "573005555555@s.whatsapp.net"
        assert created.last_activity.isoformat().startswith("2025-07-28T15:45")
    assert await run_cli(["import", str(legacy)], config) == 0
    assert "created 0, updated 0, unchanged 2, invalid 2" in capsys.readouterr().out


async def test_import_rejects_non_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    legacy = tmp_path / "threads.json"
    legacy.write_text("not json")
    assert await run_cli(["import", str(legacy)], StoreConfig(data_dir=tmp_path / "data")) == 1
    assert "not valid JSON" in capsys.readouterr().err


# ------------------------------------------------------------- refused restores


def files_of(root: Path) -> dict[str, bytes | None]:
    """Every file (its bytes) and directory (None) under ``root``, by relative path."""
    return {
        str(path.relative_to(root)): None if path.is_dir() else path.read_bytes()
        for path in sorted(root.rglob("*"))
    }


async def store_with_backup(config: StoreConfig) -> Path:
    """A data directory holding two records, their journal and one valid backup."""
    async with open_store(config) as store:
        await store.put(record("573001", conversation_id="conv_1"))
        backup = await store.backup()
        await store.put(record("573002"))
    return backup


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "does not exist"),
        (b"", "is empty"),
        (b"  \n", "is empty"),
        (b'{"573001": {"chatId": tru', "not valid JSON"),
        (b"\xff\xfe garbage \x00", "not valid JSON"),
        (b"[]", "found an array"),
        (b"{}", "holds no records"),
        (b'{"573001": {"chatId": 5}, "573002": "nope"}', "holds no valid records"),
    ],
    ids=["missing", "empty", "blank", "truncated", "binary", "array", "zero", "all-invalid"],
)
async def test_restore_of_a_bad_source_changes_nothing_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes | None, problem: str
) -> None:
    config = StoreConfig(data_dir=tmp_path / "data")
    backup = await store_with_backup(config)
    source = tmp_path / "source.json"
    if content is not None:
        source.write_bytes(content)
    before = files_of(config.data_dir)
    capsys.readouterr()
    assert await run_cli(["restore", str(source)], config) == 1
    captured = capsys.readouterr()
    assert files_of(config.data_dir) == before, "a refused restore must change nothing"
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"wabot store restore: {source}")
    assert problem in lines[0] and lines[0].endswith("nothing was changed")
    assert "Refusing to start" not in captured.err and "no valid backup" not in captured.err
    assert captured.out == ""
    assert backup.exists()


async def test_restore_of_an_unreadable_source_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = StoreConfig(data_dir=tmp_path / "data")
    await store_with_backup(config)
    source = tmp_path / "a-directory.json"
    source.mkdir()
    before = files_of(config.data_dir)
    capsys.readouterr()
    assert await run_cli(["restore", str(source)], config) == 1
    err = capsys.readouterr().err
    assert files_of(config.data_dir) == before
    assert err.count("\n") == 1 and "cannot be read" in err and "nothing was changed" in err


async def test_restore_allow_empty_installs_an_empty_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = StoreConfig(data_dir=tmp_path / "data")
    await store_with_backup(config)
    empty = tmp_path / "empty.json"
    empty.write_text("{}")
    assert await run_cli(["restore", "--allow-empty", str(empty)], config) == 0
    out = capsys.readouterr().out
    assert f"restored 0 records from {empty}" in out
    async with open_store(config) as store:
        assert len(store) == 0  # the journal's puts were folded into the snapshot set aside
    aside = list((config.data_dir / "aside").glob("restore-*/threads-data.json"))
    assert len(aside) == 1 and b"573001" in aside[0].read_bytes()
    # --allow-empty allows zero records, not a missing or unreadable file.
    assert await run_cli(["restore", "--allow-empty", str(tmp_path / "nope.json")], config) == 1
    assert "does not exist" in capsys.readouterr().err


async def test_commands_on_a_damaged_store_name_the_backup_not_a_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = StoreConfig(data_dir=tmp_path / "data")
    backup = await store_with_backup(config)
    (config.data_dir / "threads-data.json").write_bytes(b'{\n"573001": {"chatId": "x", trunc')
    capsys.readouterr()
    assert await run_cli(["verify"], config) == 1
    out = capsys.readouterr().out
    assert "CORRUPT: " in out and "threads-data.json" in out
    assert f"the newest valid backup is {backup}" in out
    assert f"`wabot store restore {backup}`" in out
    assert f"backup ok: {backup.name}: 1 records" in out
    for command in ("stats", "list", "backup"):
        assert await run_cli([command], config) == 1
        captured = capsys.readouterr()
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1, captured.err
        assert lines[0].startswith(f"wabot store {command}: {config.data_dir}/threads-data.json")
        assert f"`wabot store restore {backup}`" in lines[0]
    # A garbage file given to restore is about that file, not about the store.
    garbage = tmp_path / "garbage.json"
    garbage.write_text("not json at all")
    assert await run_cli(["restore", str(garbage)], config) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"wabot store restore: {garbage} is not a valid snapshot")
    for captured_text in (out, err):
        assert "Refusing to start" not in captured_text
    # The backup it named does restore the damaged store.
    assert await run_cli(["restore", str(backup)], config) == 0
    assert "restored 1 records" in capsys.readouterr().out
    assert await run_cli(["verify"], config) == 0


async def test_verify_names_the_damage_of_a_corrupt_backup(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = StoreConfig(data_dir=tmp_path / "data")
    backup = await store_with_backup(config)
    backup.write_text("")
    capsys.readouterr()
    assert await run_cli(["verify"], config) == 1
    out = capsys.readouterr().out
    assert f"CORRUPT backup: {backup.name}: the file is empty (0 bytes)" in out
    assert "Refusing to start" not in out
