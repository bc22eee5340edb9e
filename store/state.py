"""The store's in-memory state and the journal operations that change it.

Every operation is a "set" (put a record, delete it, mark an inbox id pending, mark ids done
at a time), so replaying a journal over a snapshot that already contains some of its effects
gives the same result: that is what makes fuzzy snapshots correct. Each mutation returns an
undo step, used when the journal write that should have made it durable fails.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import attrs

from store.dedupe import Bucket, DoneIds
from store.records import InboxEntry, UserRecord
from store.shards import ShardedDict


@attrs.frozen
class UndoRecord:
    user_id: str
    previous: UserRecord | None


@attrs.frozen
class UndoInboxAdd:
    message_id: str


@attrs.frozen
class UndoInboxDone:
    message_id: str
    pending: tuple[int, InboxEntry] | None
    bucket: Bucket
    previous_at: float | None


Undo = UndoRecord | UndoInboxAdd | UndoInboxDone


def encode_json(obj: Any, *, strict: bool = False) -> bytes:
    """JSON as the journal writes it: UTF-8, compact, non-ASCII characters as they are.

    ``strict`` refuses (``ValueError``) non-finite numbers, which would be written as tokens
    that are not JSON; otherwise the bytes are the same.
    """
    return json.dumps(obj, ensure_ascii=False, allow_nan=not strict, separators=(",", ":")).encode()


def encode_put(record: UserRecord) -> bytes:
    return encode_json({"op": "put", "user": record.user_id, "record": record.to_json()})


def encode_delete(user_id: str, reason: str) -> bytes:
    return encode_json({"op": "delete", "user": user_id, "reason": reason})


def encode_inbox_add(entry: InboxEntry, payload: bytes | None = None) -> bytes:
    """The journal line's body; ``payload`` is ``encode_json(entry.payload)`` if already made.

    The gateway encodes every message to check it can be journaled; passing that encoding
    here saves encoding it twice. The bytes are the same either way.
    """
    if payload is None:
        return encode_json({"op": "inbox_add", "entry": entry.to_json()})
    head = entry.to_json()
    del head["payload"]
    return b"".join(
        (encode_json({"op": "inbox_add", "entry": head})[:-2], b',"payload":', payload, b"}}")
    )


def encode_inbox_done(message_ids: list[str], outcome: str, at: float) -> bytes:
    return encode_json({"op": "inbox_done", "ids": message_ids, "outcome": outcome, "at": at})


class InvalidOp(ValueError):
    """A journal line that is valid JSON but not a valid operation."""


@attrs.define(eq=False)
class StoreState:
    """Records, pending inbox entries and done ids; mutated only on the event loop."""

    done: DoneIds
    records: ShardedDict[UserRecord] = attrs.Factory(ShardedDict)
    #: message id -> (arrival number, entry); dict order is arrival order except after undo.
    pending: dict[str, tuple[int, InboxEntry]] = attrs.Factory(dict)
    #: user id -> their pending message ids (arrival order), so an actor's activation does
    #: not scan everyone's inbox. Kept in step with ``pending`` by the two helpers below.
    pending_by_user: dict[str, dict[str, None]] = attrs.Factory(dict)
    _arrivals: int = 0

    def _pending_set(self, message_id: str, value: tuple[int, InboxEntry]) -> None:
        self.pending[message_id] = value
        self.pending_by_user.setdefault(value[1].user_id, {})[message_id] = None

    def _pending_pop(self, message_id: str) -> tuple[int, InboxEntry] | None:
        value = self.pending.pop(message_id, None)
        if value is not None:
            ids = self.pending_by_user.get(value[1].user_id)
            if ids is not None:
                ids.pop(message_id, None)
                if not ids:
                    del self.pending_by_user[value[1].user_id]
        return value

    def pending_for(self, user_id: str) -> list[InboxEntry]:
        ids = self.pending_by_user.get(user_id, {})
        entries = [self.pending[message_id] for message_id in ids]
        return [entry for _, entry in sorted(entries, key=lambda item: item[0])]

    # -- records

    def put(self, record: UserRecord) -> UndoRecord:
        return UndoRecord(record.user_id, self.records.set(record.user_id, record))

    def delete(self, user_id: str) -> UndoRecord:
        return UndoRecord(user_id, self.records.pop(user_id))

    def get(self, user_id: str) -> UserRecord | None:
        return self.records.get(user_id)

    # -- inbox

    def inbox_add(self, entry: InboxEntry) -> UndoInboxAdd:
        self._arrivals += 1
        self._pending_set(entry.message_id, (self._arrivals, entry))
        return UndoInboxAdd(entry.message_id)

    def inbox_done(self, message_id: str, at: float) -> UndoInboxDone:
        pending = self._pending_pop(message_id)
        bucket, previous_at = self.done.add(message_id, at)
        return UndoInboxDone(message_id, pending, bucket, previous_at)

    def pending_entries(self) -> list[InboxEntry]:
        return [entry for _, entry in self.pending.values()]

    # -- undo (newest first)

    def undo(self, step: Undo) -> None:
        if isinstance(step, UndoRecord):
            if step.previous is None:
                self.records.pop(step.user_id)
            else:
                self.records.set(step.user_id, step.previous)
        elif isinstance(step, UndoInboxAdd):
            self._pending_pop(step.message_id)
        else:
            self.done.undo_add(step.bucket, step.message_id, step.previous_at)
            if step.pending is not None:
                self._pending_set(step.message_id, step.pending)
                self._restore_arrival_order()

    def _restore_arrival_order(self) -> None:
        ordered = sorted(self.pending.items(), key=lambda item: item[1][0])
        self.pending = dict(ordered)

    # -- replay

    def apply(self, op: Any) -> UserRecord | None:
        """Apply one journal operation (without its ``seq``); raises ``InvalidOp``.

        A ``put`` or ``inbox_add`` whose payload fails validation raises a plain
        ``ValueError`` from ``from_json`` (the caller quarantines it).
        """
        if not isinstance(op, dict):
            raise InvalidOp("operation must be an object")
        kind = op.get("op")
        if kind == "put":
            user_id = op.get("user")
            if not isinstance(user_id, str):
                raise InvalidOp("put: user must be a string")
            record = UserRecord.from_json(user_id, op.get("record"))
            self.records.set(user_id, record)
            return record
        if kind == "delete":
            user_id = op.get("user")
            if not isinstance(user_id, str):
                raise InvalidOp("delete: user must be a string")
            self.records.pop(user_id)
        elif kind == "inbox_add":
            # An invalid entry raises ValueError (quarantined by the loader), not InvalidOp.
            self.inbox_add(InboxEntry.from_json(op.get("entry")))
        elif kind == "inbox_done":
            ids, at = op.get("ids"), op.get("at")
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                raise InvalidOp("inbox_done: ids must be a list of strings")
            if not isinstance(at, int | float):
                raise InvalidOp("inbox_done: at must be a number")
            for message_id in ids:
                self._pending_pop(message_id)
                self.done.add(message_id, float(at))
        else:
            raise InvalidOp(f"unknown operation {kind!r}")
        return None

    def record_items(self) -> Iterator[tuple[str, UserRecord]]:
        return self.records.items_copy()
