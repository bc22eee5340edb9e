"""Import of the original bot's files into the store (``wabot store import PATH``).

Understood shapes (original-bot.md §8 and the seed chapter):

- ``tmp/threads.json``: an array of ``[userId, {threadId, chatId, userName, createdAt,
  lastActivity, name?, labels?}]`` pairs (a serialized JS ``Map``);
- the documented keyed ``threads-data.json``: ``{userId: {same fields}}``;
- the obsolete ``guest-memory.json`` / ``guest_profiles.json``: ``{userId: {name,
  whapiLabels: [{id, name}], lastInteraction}}`` or the same as pairs.

``threadId`` is kept as ``legacy_thread_id`` (the Assistants API is gone, so the next message
starts a fresh conversation). Merging keeps what wabot already knows: missing fields are filled
in, labels are unioned, ``createdAt`` takes the earliest and ``lastActivity`` the latest value.
That makes an import idempotent. Invalid items are quarantined and reported.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import attrs
import trio

from store.actor import Store
from store.quarantine import QuarantineItem, append_quarantine
from store.records import UserRecord, parse_time

log = logging.getLogger("store.legacy")

#: File names looked for when ``PATH`` is a directory (also under ``tmp/`` and ``data/``).
KNOWN_FILES = ("threads.json", "threads-data.json", "guest-memory.json", "guest_profiles.json")
_CONCURRENT_PUTS = 256


@attrs.define
class ImportReport:
    files: list[Path] = attrs.Factory(list)
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    invalid: list[QuarantineItem] = attrs.Factory(list)

    def lines(self) -> list[str]:
        out = [f"read {len(self.files)} file(s): " + ", ".join(str(f) for f in self.files)]
        out.append(
            f"created {self.created}, updated {self.updated}, unchanged {self.unchanged}, "
            f"invalid {len(self.invalid)}"
        )
        out.extend(f"  invalid: {i.key} in {i.source}: {i.reason}" for i in self.invalid)
        if self.invalid:
            out.append("invalid items were appended to quarantine.jsonl")
        return out


@attrs.frozen
class LegacyItem:
    user_id: str
    raw: dict[str, Any]
    source: str

    @property
    def is_guest_profile(self) -> bool:
        return "createdAt" not in self.raw and (
            "whapiLabels" in self.raw or "lastInteraction" in self.raw
        )


def find_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"{path} does not exist")
    found = [
        candidate
        for folder in (path, path / "tmp", path / "data")
        for name in KNOWN_FILES
        if (candidate := folder / name).is_file()
    ]
    if not found:
        raise FileNotFoundError(f"no legacy file ({', '.join(KNOWN_FILES)}) found in {path}")
    return found


def read_items(path: Path) -> tuple[list[LegacyItem], list[QuarantineItem]]:
    """Parse one legacy file (either layout); raises ``ValueError`` if it is not JSON."""
    source = str(path)
    try:
        parsed = json.loads(path.read_bytes())
    except ValueError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc
    pairs: Iterable[Any]
    if isinstance(parsed, dict):
        pairs = ([k, v] for k, v in parsed.items())
    elif isinstance(parsed, list):
        pairs = parsed
    else:
        raise ValueError(f"{path}: expected an object keyed by user id or an array of pairs")
    items: list[LegacyItem] = []
    invalid: list[QuarantineItem] = []
    for index, pair in enumerate(pairs):
        if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str)):
            invalid.append(QuarantineItem(source, f"#{index}", "expected [userId, record]", pair))
        elif not isinstance(pair[1], dict) or not pair[0]:
            invalid.append(QuarantineItem(source, pair[0], "record must be an object", pair[1]))
        else:
            items.append(LegacyItem(pair[0], pair[1], source))
    return items, invalid


def _union(first: tuple[str, ...], second: Iterable[str]) -> tuple[str, ...]:
    return first + tuple(label for label in dict.fromkeys(second) if label not in first)


def merge_thread(existing: UserRecord | None, item: LegacyItem) -> UserRecord:
    """A thread record merged into ``existing``; raises ``ValueError`` if invalid."""
    incoming = UserRecord.from_json(item.user_id, item.raw)
    if existing is None:
        return incoming
    return attrs.evolve(
        existing,
        legacy_thread_id=existing.legacy_thread_id or incoming.legacy_thread_id,
        conversation_id=existing.conversation_id or incoming.conversation_id,
        name=existing.name or incoming.name,
        labels=_union(existing.labels, incoming.labels),
        created_at=min(existing.created_at, incoming.created_at),
        last_activity=max(existing.last_activity, incoming.last_activity),
    )


def merge_guest(existing: UserRecord | None, item: LegacyItem) -> UserRecord:
    """A guest profile's name and labels merged into ``existing`` (or a new record)."""
    raw = item.raw
    name = raw.get("name")
    if name is not None and not isinstance(name, str):
        raise ValueError("name: expected a string")
    whapi_labels = raw.get("whapiLabels") or []
    if not isinstance(whapi_labels, list) or not all(
        isinstance(label, dict) and isinstance(label.get("name"), str) for label in whapi_labels
    ):
        raise ValueError("whapiLabels: expected a list of {id, name} objects")
    labels = [label["name"] for label in whapi_labels]
    last: datetime | None = None
    if raw.get("lastInteraction") is not None:
        last = parse_time(raw["lastInteraction"], "lastInteraction")
    if existing is None:
        first = raw.get("firstInteraction")
        created = parse_time(first, "firstInteraction") if first is not None else last
        if created is None:
            raise ValueError("lastInteraction: missing (needed to create a record)")
        return UserRecord(
            user_id=item.user_id,
            chat_id=f"{item.user_id}@s.whatsapp.net",
            user_name=name or item.user_id,
            created_at=created,
            last_activity=last or created,
            name=name or None,
            labels=tuple(dict.fromkeys(labels)),
        )
    return attrs.evolve(
        existing,
        name=existing.name or name or None,
        labels=_union(existing.labels, labels),
        last_activity=max(existing.last_activity, last) if last else existing.last_activity,
    )


async def import_legacy(store: Store, path: Path) -> ImportReport:
    """Read, validate and merge every legacy file at ``path`` into ``store``."""
    report = ImportReport(files=find_files(path))
    pending: dict[str, UserRecord] = {}
    for file in report.files:
        items, invalid = read_items(file)
        report.invalid.extend(invalid)
        for item in items:
            existing = pending.get(item.user_id) or store.get(item.user_id)
            try:
                if item.is_guest_profile:
                    merged = merge_guest(existing, item)
                else:
                    merged = merge_thread(existing, item)
            except ValueError as exc:
                report.invalid.append(QuarantineItem(item.source, item.user_id, str(exc), item.raw))
                continue
            pending[item.user_id] = merged
    for user_id, merged in pending.items():
        before = store.get(user_id)
        if before is None:
            report.created += 1
        elif before == merged:
            report.unchanged += 1
        else:
            report.updated += 1
    changed = [r for r in pending.values() if store.get(r.user_id) != r]
    for start in range(0, len(changed), _CONCURRENT_PUTS):
        async with trio.open_nursery() as nursery:
            for merged in changed[start : start + _CONCURRENT_PUTS]:
                nursery.start_soon(store.put, merged)
    if report.invalid:
        files = store.data_files
        await trio.to_thread.run_sync(
            append_quarantine, store.config.io, files.quarantine, report.invalid
        )
    log.info(
        "legacy import from %s: created %d, updated %d, unchanged %d, invalid %d",
        path,
        report.created,
        report.updated,
        report.unchanged,
        len(report.invalid),
    )
    return report
