"""``wabot store ...``: backup, verify, restore, stats, list and import of the legacy files.

Commands:
    backup [--kind KIND]  write a backup of the current state into data/backups/
    verify                check snapshot, journal and every backup; print counts
    restore FILE          install a backup as the snapshot (the damaged files are kept aside);
                          a FILE that is missing, unreadable or holds no valid record is
                          refused and nothing changes (--allow-empty: restore zero records)
    stats                 counts and sizes
    list [--json]         one line per user (the successor of the original getAllThreadsInfo)
    import PATH           merge the original bot's files (threads.json, threads-data.json,
                          guest-memory.json, guest_profiles.json; PATH may be a directory)

Read-only commands (stats, list, verify, backup) also work while the bot runs: they read the
files without the lock, retrying if a compaction replaced them meanwhile (backup then writes
the snapshot merged with the journal as one consistent file). restore and import take the
lock and refuse while the bot holds it.

Exit codes: 0 success; 1 corrupt data, invalid input or a failed operation; 2 usage error, or
refused because another process holds the data directory.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import trio

from store.actor import open_store
from store.backups import backup_path, list_backups, rotate, validate_backup
from store.config import StoreConfig
from store.dedupe import Bucket
from store.errors import DataDirLocked, StoreCorrupt
from store.journal import read_journal
from store.layout import DAILY, HOURLY, DataFiles
from store.legacy import import_legacy
from store.loader import Loaded, load
from store.lock import DataDirLock
from store.quarantine import QuarantineItem, append_quarantine, count_quarantine
from store.records import format_time
from store.snapshot import (
    RecordsRead,
    inbox_chunks,
    read_inbox,
    read_records,
    record_chunks,
    records_from,
    write_chunks_atomic,
)

OK, FAILED, REFUSED = 0, 1, 2
_READ_ATTEMPTS = 5


def main(argv: list[str], config: StoreConfig) -> int:
    """Parse ``argv`` (the words after ``wabot store``) and run the command."""
    parser = argparse.ArgumentParser(prog="wabot store", description=DESCRIPTION)
    add_commands(parser)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0) and REFUSED
    return run(args, config)


def run(args: argparse.Namespace, config: StoreConfig) -> int:
    """Run the store command parsed by a parser that ``add_commands`` built."""
    command = args.store_command
    files = DataFiles(config.data_dir)
    out = sys.stdout
    try:
        if command == "stats":
            return _stats(files, config, out)
        if command == "list":
            return _list(files, config, out, args.json)
        if command == "verify":
            return _verify(files, config, out)
        if command == "backup":
            return _backup(files, config, out, args.kind)
        if command == "restore":
            return _restore(files, config, out, Path(args.file), args.allow_empty)
        if command == "import":
            return _import(config, out, Path(args.path))
    except DataDirLocked as exc:
        print(f"wabot store {command}: refused: {exc}", file=sys.stderr)
        return REFUSED
    except StoreCorrupt as exc:
        print(f"wabot store {command}: {exc.damage}; {exc.advice}", file=sys.stderr)
        return FAILED
    except (OSError, ValueError) as exc:
        print(f"wabot store {command}: failed: {exc}", file=sys.stderr)
        return FAILED
    print(f"wabot store: unknown command {command!r}", file=sys.stderr)
    return REFUSED


DESCRIPTION = (
    "Maintenance of the data directory: backups, checks, restore, counts, listing and the "
    "import of the original bot's files. stats, list, verify and backup also work while the "
    "bot runs; restore and import refuse while it holds the data directory."
)


def add_commands(parser: argparse.ArgumentParser) -> None:
    """Add the store's subcommands (dest ``store_command``) to ``parser``."""
    commands = parser.add_subparsers(dest="store_command", required=True, metavar="COMMAND")
    backup = commands.add_parser(
        "backup", help="write a backup of the current state into DATA_DIR/backups/"
    )
    backup.add_argument("--kind", default="manual", help="backup kind in the file name")
    commands.add_parser("verify", help="check snapshot, journal and every backup; print counts")
    restore = commands.add_parser(
        "restore", help="install a backup as the snapshot (the current files are kept aside)"
    )
    restore.add_argument("file", help="the backup to install (see `wabot store verify`)")
    restore.add_argument(
        "--allow-empty",
        action="store_true",
        help="restore even if FILE holds no valid record (empties the store on purpose)",
    )
    commands.add_parser("stats", help="counts of records and messages, file sizes")
    listing = commands.add_parser("list", help="one line per customer")
    listing.add_argument("--json", action="store_true", help="print a JSON object instead")
    importing = commands.add_parser("import", help="merge the original bot's files")
    importing.add_argument(
        "path", help="threads.json, threads-data.json, guest files, or their directory"
    )


# --------------------------------------------------------------------- reading


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def read_consistent(files: DataFiles, config: StoreConfig) -> Loaded:
    """Load without the lock; retry if a snapshot was committed while reading."""
    for attempt in range(_READ_ATTEMPTS):
        before = _signature(files.inbox)
        try:
            loaded = load(
                files, config.dedupe_window_seconds, config.dedupe_max_ids, config.clock()
            )
        except StoreCorrupt:
            if _signature(files.inbox) != before and attempt + 1 < _READ_ATTEMPTS:
                continue
            raise
        if _signature(files.inbox) == before:
            return loaded
    raise StoreCorrupt(files.inbox, "kept changing while being read (is a compaction looping?)")


def _bot_running(files: DataFiles) -> bool:
    lock = DataDirLock(files.lock)
    try:
        lock.acquire()
    except DataDirLocked:
        return True
    lock.release()
    return False


# -------------------------------------------------------------------- commands


def _stats(files: DataFiles, config: StoreConfig, out: TextIO) -> int:
    running = _bot_running(files)
    loaded = read_consistent(files, config)
    backups = list_backups(files.backups)
    print(f"data directory:   {files.root}", file=out)
    print(f"bot running:      {'yes (lock held)' if running else 'no'}", file=out)
    print(f"records:          {len(loaded.state.records)}", file=out)
    print(f"pending inbox:    {len(loaded.state.pending)}", file=out)
    print(f"done ids:         {len(loaded.state.done)}", file=out)
    print(f"snapshot:         {loaded.snapshot_bytes} bytes, seq {loaded.snapshot_seq}", file=out)
    print(
        f"journal:          {loaded.journal_bytes} bytes, {loaded.replayed} entries after the "
        f"snapshot, last seq {loaded.last_seq}",
        file=out,
    )
    newest = backups[0].path.name if backups else "none"
    print(f"backups:          {len(backups)} (newest: {newest})", file=out)
    print(f"quarantined:      {count_quarantine(files.quarantine)}", file=out)
    return OK


def _list(files: DataFiles, config: StoreConfig, out: TextIO, as_json: bool) -> int:
    loaded = read_consistent(files, config)
    records = sorted(loaded.state.records.items_copy(), key=lambda item: item[0])
    if as_json:
        info = {
            user_id: {
                "chatId": r.chat_id,
                "userName": r.user_name,
                "name": r.name,
                "labels": list(r.labels),
                "createdAt": format_time(r.created_at),
                "lastActivity": format_time(r.last_activity),
                "conversationId": r.conversation_id,
                "threadId": r.legacy_thread_id,
            }
            for user_id, r in records
        }
        json.dump(info, out, ensure_ascii=False, indent=2)
        print(file=out)
        return OK
    print("userId\tchatId\tuserName\tlastActivity\tconversationId", file=out)
    for user_id, r in records:
        print(
            f"{user_id}\t{r.chat_id}\t{r.user_name}\t{format_time(r.last_activity)}\t"
            f"{r.conversation_id or '-'}",
            file=out,
        )
    print(f"{len(records)} user(s)", file=out)
    return OK


def _verify(files: DataFiles, config: StoreConfig, out: TextIO) -> int:
    problems = 0
    try:
        loaded = read_consistent(files, config)
    except StoreCorrupt as exc:
        print(f"CORRUPT: {exc.damage}", file=out)
        print(f"to repair: {exc.advice}", file=out)
        problems += 1
    else:
        print(
            f"snapshot ok: {len(loaded.state.records)} records, {len(loaded.state.pending)} "
            f"pending, {len(loaded.state.done)} done ids (seq {loaded.snapshot_seq})",
            file=out,
        )
        for journal in loaded.journals:
            if journal.total_bytes or journal.path.exists():
                tail = f", torn tail at line {journal.torn_line}" if journal.torn else ""
                print(
                    f"journal ok: {journal.path.name}: {len(journal.lines)} lines{tail}", file=out
                )
        if loaded.quarantined:
            problems += 1
            for item in loaded.quarantined:
                print(f"INVALID: {item.key} in {item.source}: {item.reason}", file=out)
    backups = list_backups(files.backups)
    for backup in backups:
        try:
            valid, invalid = validate_backup(backup.path)
        except StoreCorrupt as exc:
            print(f"CORRUPT backup: {backup.path.name}: {exc.detail}", file=out)
            problems += 1
            continue
        except OSError as exc:
            print(f"CORRUPT backup: {backup.path.name}: cannot be read: {exc}", file=out)
            problems += 1
            continue
        extra = f", {invalid} invalid" if invalid else ""
        print(f"backup ok: {backup.path.name}: {valid} records{extra}", file=out)
        problems += 1 if invalid else 0
    print(f"{len(backups)} backup(s); quarantine: {count_quarantine(files.quarantine)}", file=out)
    print("verify: OK" if not problems else f"verify: {problems} problem(s)", file=out)
    return OK if not problems else FAILED


def _backup(files: DataFiles, config: StoreConfig, out: TextIO, kind: str) -> int:
    lock = DataDirLock(files.lock)
    try:
        lock.acquire()
    except DataDirLocked:
        lock = None  # the bot runs: read consistently without the lock
    try:
        loaded = read_consistent(files, config)
        target = backup_path(files.backups, kind, datetime.now(UTC))
        files.backups.mkdir(parents=True, exist_ok=True)
        write_chunks_atomic(config.io, target, record_chunks(loaded.state.records.shards))
        rotate(
            config.io,
            files.backups,
            {HOURLY: config.backups_hourly, DAILY: config.backups_daily},
            config.backups_manual,
        )
    finally:
        if lock is not None:
            lock.release()
    print(f"backup written: {target} ({len(loaded.state.records)} records)", file=out)
    return OK


def _read_source(source: Path, allow_empty: bool) -> RecordsRead | str:
    """The records to restore from ``source``, or why it must not be restored."""
    try:
        read = read_records(source, missing_ok=False)
    except FileNotFoundError:
        return f"{source} does not exist"
    except StoreCorrupt as exc:
        where = f" (line {exc.line})" if exc.line is not None else ""
        return f"{source} is not a valid snapshot{where}: {exc.detail}"
    except OSError as exc:
        return f"{source} cannot be read: {exc.strerror or exc}"
    if read.records or allow_empty:
        return read
    if read.invalid:
        user_id, _raw, why = read.invalid[0]
        return (
            f"{source} holds no valid records ({len(read.invalid)} invalid, e.g. {user_id}: {why})"
        )
    return f"{source} holds no records (pass --allow-empty to empty the store on purpose)"


def _restore(
    files: DataFiles, config: StoreConfig, out: TextIO, source: Path, allow_empty: bool
) -> int:
    io = config.io
    # Validate before anything is touched: a bad source must leave data/ exactly as it was.
    read = _read_source(source, allow_empty)
    if isinstance(read, str):
        print(f"wabot store restore: {read}; nothing was changed", file=sys.stderr)
        return FAILED
    lock = DataDirLock(files.lock)
    lock.acquire()  # DataDirLocked -> exit 2
    try:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        aside = files.aside / f"restore-{stamp}"
        aside.mkdir(parents=True, exist_ok=True)
        moved: list[str] = []

        def put_aside(path: Path) -> None:
            if path.exists():
                os.replace(path, aside / path.name)
                moved.append(path.name)

        # The inbox: keep its pending/done if readable, else start it empty.
        try:
            inbox = read_inbox(files.inbox)
        except StoreCorrupt as exc:
            print(f"inbox snapshot unreadable, set aside: {exc.detail}", file=out)
            put_aside(files.inbox)
            inbox = read_inbox(files.inbox)  # now missing: empty
        # The journals: keep the valid prefix of each, set the damaged ones aside.
        first_seq: int | None = None
        for path in files.journals():
            try:
                journal = read_journal(path)
                keep = journal.good_bytes
            except StoreCorrupt as exc:
                raw = path.read_bytes()
                keep = sum(len(line) + 1 for line in raw.split(b"\n")[: (exc.line or 1) - 1])
                print(
                    f"{path.name}: damaged at line {exc.line}; keeping the lines before", file=out
                )
                put_aside_copy = aside / path.name
                put_aside_copy.write_bytes(raw)
                moved.append(path.name)
                write_chunks_atomic(io, path, [raw[:keep]])
                journal = read_journal(path)
            if journal.lines and first_seq is None:
                first_seq = journal.lines[0].seq
        put_aside(files.records)
        write_chunks_atomic(io, files.records, record_chunks(records_from(read.records.items())))
        # Replay every surviving journal line over the restored records (ops are idempotent).
        seq = inbox.seq if first_seq is None else first_seq - 1
        done = [Bucket(0.0, dict(inbox.done))]
        write_chunks_atomic(io, files.inbox, inbox_chunks(seq, inbox.pending, done, config.clock()))
        if read.invalid:
            append_quarantine(
                io,
                files.quarantine,
                [QuarantineItem(str(source), uid, why, raw) for uid, raw, why in read.invalid],
            )
        loaded = load(files, config.dedupe_window_seconds, config.dedupe_max_ids, config.clock())
    finally:
        lock.release()
    if moved:
        print(f"previous files kept in {aside}: {', '.join(moved)}", file=out)
    else:
        aside.rmdir()
    print(
        f"restored {len(read.records)} records from {source}"
        + (f" ({len(read.invalid)} invalid, quarantined)" if read.invalid else ""),
        file=out,
    )
    print(
        f"after replaying the journal: {len(loaded.state.records)} records, "
        f"{len(loaded.state.pending)} pending inbox entries",
        file=out,
    )
    return OK


def _import(config: StoreConfig, out: TextIO, path: Path) -> int:
    async def run() -> list[str]:
        async with open_store(config) as store:
            if len(store):
                await store.backup("pre-import")
            report = await import_legacy(store, path)
        return report.lines()

    for line in trio.run(run):
        print(line, file=out)
    return OK
