"""The data the store keeps: one record per WhatsApp user, and the durable inbox entries.

Records are immutable (``attrs.frozen``): a change makes a new record with ``attrs.evolve``.
That lets the store hand the same object to an actor and to a snapshot being written in a
thread without copying, and lets a snapshot be taken while mutations go on.

On disk a record uses the original bot's documented field names (``chatId``, ``userName``,
``createdAt``, ``lastActivity``, ``name``, ``labels``, ``threadId``) plus ours.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import attrs


def utcnow() -> datetime:
    """Now, timezone-aware in UTC (the only kind of datetime the store keeps)."""
    return datetime.now(UTC)


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def format_time(value: datetime) -> str:
    """The on-disk form of a time: ISO-8601 in UTC with milliseconds and ``Z``."""
    text = _iso(value)
    assert text is not None
    return text


def parse_time(value: Any, field: str) -> datetime:
    """Parse an ISO-8601 time as written by us or by the original bot (``…Z``)."""
    if not isinstance(value, str):
        raise ValueError(f"{field}: expected an ISO-8601 string, got {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"{field}: not an ISO-8601 time: {value!r}") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def _optional_time(raw: dict[str, Any], key: str) -> datetime | None:
    value = raw.get(key)
    return None if value is None else parse_time(value, key)


def _optional_str(raw: dict[str, Any], key: str) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{key}: expected a string, got {type(value).__name__}")
    return value


@attrs.frozen
class PendingTurn:
    """A turn's intent, stored before its model call and cleared when its messages settle.

    A process that dies between the two leaves it in the record; the next one resumes the
    turn instead of asking again: it looks in ``conversation_id`` for ``input_text`` with an
    answer after it, and sends only the reply parts the chat does not show since
    ``started_at``. A turn that gives way to the customer's later messages stores it again
    before it asks anew, naming all its messages and their joined input (the abandoned ask
    was deleted from the conversation first), so a crash resumes the ask that superseded.
    """

    turn_id: str
    message_ids: tuple[str, ...]
    conversation_id: str
    input_text: str
    started_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.turn_id,
            "messages": list(self.message_ids),
            "conversationId": self.conversation_id,
            "input": self.input_text,
            "startedAt": _iso(self.started_at),
        }

    @classmethod
    def from_json(cls, raw: Any) -> PendingTurn:
        if not isinstance(raw, dict):
            raise ValueError("pendingTurn: expected an object")
        ids = raw.get("messages")
        if not isinstance(ids, list) or not all(isinstance(x, str) for x in ids):
            raise ValueError("pendingTurn.messages: expected a list of strings")
        turn_id = _optional_str(raw, "id")
        conversation_id = _optional_str(raw, "conversationId")
        text = raw.get("input")
        if not turn_id or not conversation_id or not isinstance(text, str):
            raise ValueError("pendingTurn: id, conversationId and input are required")
        return cls(
            turn_id,
            tuple(ids),
            conversation_id,
            text,
            parse_time(raw.get("startedAt"), "startedAt"),
        )


@attrs.frozen
class UserRecord:
    """Everything wabot remembers about one WhatsApp user between turns and restarts."""

    user_id: str
    chat_id: str
    user_name: str
    created_at: datetime
    last_activity: datetime
    conversation_id: str | None = None
    #: An Assistants API ``thread_…`` id imported from the original bot, kept for reference only.
    legacy_thread_id: str | None = None
    name: str | None = None
    labels: tuple[str, ...] = ()
    #: Handoff: the bot stays silent in this chat until this time (a human agent is talking).
    paused_until: datetime | None = None
    #: Who paused it: "operator" (admin API), "agent" (a human wrote) or "escalation" (tool).
    paused_by: str | None = None
    #: Fingerprint of the last context block sent to the model (name, labels) and when.
    context_fingerprint: str | None = None
    context_sent_at: datetime | None = None
    #: When the last model turn completed (session expiry is measured from here).
    last_turn_at: datetime | None = None
    #: When Whapi last confirmed our subscription to this contact's presence.
    presence_subscribed_at: datetime | None = None
    #: The turn in flight, if any (see ``PendingTurn``).
    pending_turn: PendingTurn | None = None

    @classmethod
    def new(
        cls, user_id: str, chat_id: str, user_name: str, now: datetime | None = None
    ) -> UserRecord:
        now = now or utcnow()
        return cls(
            user_id=user_id, chat_id=chat_id, user_name=user_name, created_at=now, last_activity=now
        )

    def to_json(self) -> dict[str, Any]:
        """The on-disk shape: the original's field names, our additions, ``None`` left out."""
        out: dict[str, Any] = {
            "chatId": self.chat_id,
            "userName": self.user_name,
            "createdAt": _iso(self.created_at),
            "lastActivity": _iso(self.last_activity),
        }
        optional: dict[str, Any] = {
            "conversationId": self.conversation_id,
            "threadId": self.legacy_thread_id,
            "name": self.name,
            "labels": list(self.labels) if self.labels else None,
            "pausedUntil": _iso(self.paused_until),
            "pausedBy": self.paused_by,
            "contextFingerprint": self.context_fingerprint,
            "contextSentAt": _iso(self.context_sent_at),
            "lastTurnAt": _iso(self.last_turn_at),
            "presenceSubscribedAt": _iso(self.presence_subscribed_at),
            "pendingTurn": self.pending_turn.to_json() if self.pending_turn else None,
        }
        out.update({k: v for k, v in optional.items() if v is not None})
        return out

    @classmethod
    def from_json(cls, user_id: str, raw: Any) -> UserRecord:
        """Validate and build a record; raises ``ValueError`` naming the bad field."""
        if not isinstance(raw, dict):
            raise ValueError(f"record must be an object, got {type(raw).__name__}")
        if not user_id:
            raise ValueError("empty user id")
        labels = raw.get("labels") or []
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise ValueError("labels: expected a list of strings")
        chat_id = _optional_str(raw, "chatId") or f"{user_id}@s.whatsapp.net"
        return cls(
            user_id=user_id,
            chat_id=chat_id,
            user_name=_optional_str(raw, "userName") or user_id,
            created_at=parse_time(raw.get("createdAt"), "createdAt"),
            last_activity=parse_time(raw.get("lastActivity", raw.get("createdAt")), "lastActivity"),
            conversation_id=_optional_str(raw, "conversationId"),
            legacy_thread_id=_optional_str(raw, "threadId"),
            name=_optional_str(raw, "name"),
            labels=tuple(labels),
            paused_until=_optional_time(raw, "pausedUntil"),
            paused_by=_optional_str(raw, "pausedBy"),
            context_fingerprint=_optional_str(raw, "contextFingerprint"),
            context_sent_at=_optional_time(raw, "contextSentAt"),
            last_turn_at=_optional_time(raw, "lastTurnAt"),
            presence_subscribed_at=_optional_time(raw, "presenceSubscribedAt"),
            pending_turn=PendingTurn.from_json(raw["pendingTurn"])
            if raw.get("pendingTurn")
            else None,
        )


@attrs.frozen
class InboxEntry:
    """One inbound WhatsApp message, journaled before the webhook is acknowledged.

    ``payload`` is the message object exactly as Whapi sent it, so a replay after a restart
    goes through the same parser as a live webhook.
    """

    message_id: str
    user_id: str
    received_at: datetime
    payload: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.message_id,
            "user": self.user_id,
            "at": _iso(self.received_at),
            "payload": self.payload,
        }

    @classmethod
    def from_json(cls, raw: Any) -> InboxEntry:
        if not isinstance(raw, dict):
            raise ValueError("inbox entry must be an object")
        message_id, user_id, payload = raw.get("id"), raw.get("user"), raw.get("payload")
        if not isinstance(message_id, str) or not message_id:
            raise ValueError("inbox entry: id must be a non-empty string")
        if not isinstance(user_id, str) or not user_id:
            raise ValueError("inbox entry: user must be a non-empty string")
        if not isinstance(payload, dict):
            raise ValueError("inbox entry: payload must be an object")
        return cls(message_id, user_id, parse_time(raw.get("at"), "at"), payload)
