"""Context for the model: date and time, the customer's name and WhatsApp labels.

The block is sent on the first turn of a conversation, when the name or labels change, and
after ``WABOT_CONTEXT_GAP_SECONDS`` without one; the time in it is always computed at the
start of the turn (never a stale cached time). Names and labels come from Whapi's
``GET /chats/{id}`` through ``ChatInfoCache``: one owner, bounded in size and age, one fetch in
flight per chat however many turns ask at once.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import attrs
import cachetools
import trio

from actors.upstream.whapi import WhapiClient, WhapiError
from store import UserRecord

log = logging.getLogger("actors.customer.context")

_WEEKDAYS = ("lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo")


@attrs.frozen
class ChatInfo:
    name: str | None
    labels: tuple[str, ...]


class ChatInfoCache:
    """Chat name and labels by chat id, at most ``max_size`` entries each for ``ttl`` seconds."""

    def __init__(self, whapi: WhapiClient, *, ttl: float, max_size: int, timeout: float) -> None:
        self._whapi = whapi
        self._timeout = timeout
        #: The answer per chat id (None: Whapi does not know it), least recently used first.
        self._entries: cachetools.TTLCache[str, ChatInfo | None] = cachetools.TTLCache(
            maxsize=max_size, ttl=ttl, timer=trio.current_time
        )
        self._inflight: dict[str, trio.Event] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def shrink(self, fraction: float) -> None:
        for _ in range(int(len(self._entries) * fraction)):
            self._entries.popitem()

    async def get(self, chat_id: str) -> ChatInfo | None:
        """Name and labels, or None when Whapi does not know the chat or cannot answer."""
        while True:
            if chat_id in self._entries:
                self.hits += 1
                return self._entries[chat_id]
            waiting = self._inflight.get(chat_id)
            if waiting is None:
                break
            await waiting.wait()
        self.misses += 1
        done = self._inflight[chat_id] = trio.Event()
        try:
            info = await self._fetch(chat_id)
            self._entries[chat_id] = info
            return info
        finally:
            del self._inflight[chat_id]
            done.set()

    async def _fetch(self, chat_id: str) -> ChatInfo | None:
        try:
            with trio.fail_after(self._timeout):
                chat = await self._whapi.get_chat(chat_id)
        except (WhapiError, trio.TooSlowError) as exc:
            log.info("chat info for %s unavailable: %r", chat_id, exc)
            return None
        if chat is None:
            return None
        return ChatInfo(name=_str(chat.get("name")), labels=_labels(chat.get("labels")))


def _str(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _labels(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    names = (item.get("name") for item in value if isinstance(item, dict))
    return tuple(name.strip() for name in names if isinstance(name, str) and name.strip())


def fingerprint(name: str | None, labels: tuple[str, ...]) -> str:
    raw = "\x1f".join([name or "", *sorted(labels)])
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def needs_context(record: UserRecord, fp: str, now: datetime, gap_seconds: float) -> bool:
    if record.context_fingerprint != fp or record.context_sent_at is None:
        return True
    return now - record.context_sent_at >= timedelta(seconds=gap_seconds)


def context_block(
    *, now: datetime, tz: str, user_id: str, profile_name: str, info: ChatInfo | None
) -> str:
    local = now.astimezone(ZoneInfo(tz))
    lines = [
        "[Contexto del sistema, no lo repitas al cliente]",
        f"Fecha y hora: {_WEEKDAYS[local.weekday()]} {local:%Y-%m-%d %H:%M} ({tz})",
        f"Cliente: {(info.name if info and info.name else None) or profile_name} (+{user_id})",
    ]
    if info and info.name and info.name != profile_name:
        lines.append(f"Nombre en WhatsApp: {profile_name}")
    if info and info.labels:
        lines.append(f"Etiquetas: {', '.join(info.labels)}")
    return "\n".join(lines)


def developer_note(text: str) -> dict[str, Any]:
    """An input item that carries context to the model without being a customer message."""
    return {"type": "message", "role": "developer", "content": text}
