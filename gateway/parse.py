"""Whapi webhook bodies ("body" mode) into typed events, and what is not for the bot.

Parsing is total: any JSON value gives a ``ParsedWebhook`` and never raises. Whatever is not a
new message or a presence for a customer is counted under a reason (``ignored``) so metrics
and tests can see why nothing happened. Rules, in order, for each entry of ``messages[]``:

* only ``event.event == "post"`` bodies carry new messages (put/patch/delete are edits);
* entries that are not objects, or lack an id, chat or sender, are ``malformed``;
* ``from_me`` with ``source == "api"`` is our own send coming back: ``echo``;
* ``from_me`` from ``mobile``/``web`` (or anything else) is a human agent: ``AgentMessage``;
* groups (``@g.us``), broadcasts and newsletters are ``group``/``broadcast`` unless allowed;
* every other type becomes an ``InboundMessage`` with the text it carries (see ``_content``).

Hostile input is expected (see tests/test_fuzz_webhook.py): numbers are used only when finite
and in range, an unknown ``type`` is counted as ``type:other`` (the reasons stay a small fixed
set), and every message is made *journal-safe* before anything reads it: lone UTF-16
surrogates become U+FFFD, non-finite numbers become ``null`` and nesting deeper than
``MAX_DEPTH`` makes the entry ``malformed``, so the store can always encode what the gateway
journals and the model client can always encode what the actor sends.

A webhook is parsed for one channel (``actors.channels``): its ``prefix`` (empty for
``default``) starts every customer key and every inbound message id, so that two numbers'
customers and inboxes never meet; agent messages keep Whapi's id (it is compared with the ids
of our own sends). The body's ``channel_id`` is kept for the caller to check.
"""

from __future__ import annotations

import math
import re
from typing import Any, NamedTuple

import attrs

from actors.customer.events import AgentMessage, InboundMessage, MediaRef, Presence
from store.state import encode_json

_DIGITS = re.compile(r"^\d{5,20}$")
#: A one-to-one chat the bot can answer: phone digits (or a LID) at a WhatsApp user domain.
_DIRECT_CHAT = re.compile(r"^\d{5,20}@(s\.whatsapp\.net|c\.us|lid)$")
_NAME_JUNK = re.compile(r"[^\w\s\u00C0-\u024F\u1E00-\u1EFF'.-]")
PRESENCE_STATUSES = frozenset({"online", "offline", "typing", "recording", "pending", "paused"})
_MEDIA_KINDS = ("image", "video", "gif", "audio", "voice", "document", "sticker", "short")
_IGNORED_KINDS = frozenset(
    {"system", "call", "action", "revoked", "hsm", "unknown", "e2e_notification"}
)
#: Whapi message types this parser knows; any other counts as ``type:other``.
KNOWN_KINDS = frozenset(
    {
        "text",
        "link_preview",
        "location",
        "live_location",
        "contact",
        "contact_list",
        "reply",
        "interactive",
        "poll",
        "product",
        "group_invite",
        "reaction",
        "story",
        "order",
        *_MEDIA_KINDS,
        *_IGNORED_KINDS,
    }
)
#: Deepest nesting accepted inside one message (Whapi's own objects are a few levels deep).
MAX_DEPTH = 32
_MAX_ID = 200
_MAX_KIND = 40


class CustomerMessage(NamedTuple):
    """A message meant for the bot: as received, as the journal encodes it, and parsed."""

    raw: dict[str, Any]
    encoded: bytes
    event: InboundMessage


@attrs.define
class ParsedWebhook:
    """What one webhook body means for the bot."""

    #: Each message meant for the bot, in delivery order.
    messages: list[CustomerMessage] = attrs.Factory(list)
    agent_messages: list[AgentMessage] = attrs.Factory(list)
    presences: list[Presence] = attrs.Factory(list)
    #: reason -> count of entries that need nothing from the bot.
    ignored: dict[str, int] = attrs.Factory(dict)
    #: The body's ``channel_id`` (Whapi's id of the number it came to), if it names one.
    channel_id: str | None = None

    def ignore(self, reason: str, count: int = 1) -> None:
        self.ignored[reason] = self.ignored.get(reason, 0) + count


def bare(jid: str) -> str:
    """``573001234567@s.whatsapp.net`` -> ``573001234567``."""
    return jid.split("@", 1)[0]


def clean_name(raw: Any) -> str | None:
    """A display name with emoji and punctuation removed, at most 50 characters."""
    if not isinstance(raw, str):
        return None
    name = " ".join(_NAME_JUNK.sub("", raw).split())[:50].strip()
    return name or None


def parse_webhook(body: Any, *, allow_groups: bool = False, prefix: str = "") -> ParsedWebhook:
    """What ``body`` means; ``prefix`` (a channel's, ``actors.channels``) starts every
    customer key and every inbound message id."""
    parsed = ParsedWebhook()
    if not isinstance(body, dict):
        parsed.ignore("not_an_object")
        return parsed
    channel_id = body.get("channel_id")
    if isinstance(channel_id, str) and channel_id:
        parsed.channel_id = channel_id
    event = body.get("event")
    method = event.get("event") if isinstance(event, dict) else None

    messages = body.get("messages")
    if isinstance(messages, list) and messages:
        if method != "post":
            parsed.ignore("message_update", len(messages))
        else:
            for raw in messages:
                _parse_message(raw, parsed, allow_groups=allow_groups, prefix=prefix)

    presences = body.get("presences")
    if isinstance(presences, list):
        for raw in presences:
            _parse_presence(raw, parsed, prefix)

    for key in ("statuses", "chats", "chats_updates", "contacts", "groups", "labels", "calls"):
        value = body.get(key)
        if isinstance(value, list) and value:
            parsed.ignore(key, len(value))
    if not (parsed.messages or parsed.agent_messages or parsed.presences or parsed.ignored):
        parsed.ignore("empty")
    return parsed


def parse_message(
    raw: Any, *, allow_groups: bool = False, prefix: str = ""
) -> InboundMessage | None:
    """Parse one stored message (an inbox replay); ``None`` if it is not for the bot."""
    parsed = ParsedWebhook()
    _parse_message(raw, parsed, allow_groups=allow_groups, prefix=prefix)
    return parsed.messages[0].event if parsed.messages else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _finite(value: Any) -> float | None:
    """A JSON number as a finite float; None for anything else (bools, NaN, 1e400, 10**400)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def journal_safe(raw: dict[str, Any]) -> tuple[dict[str, Any], bytes] | None:
    """``raw`` (or a repaired copy) and its encoding as the journal writes it; None if too deep.

    The encoding is handed to the store with the message, so each message is encoded once.
    """
    try:
        encoded = encode_json(raw, strict=True)
    except (ValueError, UnicodeEncodeError, RecursionError):
        pass
    else:
        # Nesting can be no deeper than the brackets in the text (those inside strings
        # included): the common, shallow message needs no walk.
        if encoded.count(b"{") + encoded.count(b"[") <= MAX_DEPTH or _depth_ok(raw, MAX_DEPTH):
            return raw, encoded
        return None
    try:
        repaired = _repair(raw, MAX_DEPTH)
    except _TooDeep:
        return None
    if not isinstance(repaired, dict):
        return None
    return repaired, encode_json(repaired, strict=True)


class _TooDeep(Exception):
    pass


def _depth_ok(value: Any, budget: int) -> bool:
    if isinstance(value, dict):
        return budget > 0 and all(_depth_ok(v, budget - 1) for v in value.values())
    if isinstance(value, list):
        return budget > 0 and all(_depth_ok(v, budget - 1) for v in value)
    return True


def _repair(value: Any, budget: int) -> Any:
    if isinstance(value, str):
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict | list) and budget <= 0:
        raise _TooDeep
    if isinstance(value, dict):
        return {_repair(k, budget): _repair(v, budget - 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_repair(v, budget - 1) for v in value]
    return value


def _parse_message(
    raw: Any, parsed: ParsedWebhook, *, allow_groups: bool, prefix: str = ""
) -> None:
    safe = journal_safe(raw) if isinstance(raw, dict) else None
    if safe is None:
        parsed.ignore("malformed")
        return
    raw, encoded = safe
    message_id, chat_id, kind = _str(raw.get("id")), _str(raw.get("chat_id")), _str(raw.get("type"))
    if (
        not message_id
        or not chat_id
        or not kind
        or len(message_id) > _MAX_ID
        or len(chat_id) > _MAX_ID
        or len(kind) > _MAX_KIND
    ):
        parsed.ignore("malformed")
        return
    domain = chat_id.partition("@")[2]
    if domain == "g.us" and not allow_groups:
        parsed.ignore("group")
        return
    if domain in {"broadcast", "newsletter"} or chat_id.startswith("status@"):
        parsed.ignore("broadcast")
        return
    if domain != "g.us" and not _DIRECT_CHAT.match(chat_id):
        parsed.ignore("malformed")  # nothing could ever be sent back to it
        return
    ts = _finite(raw.get("timestamp")) or 0.0

    if raw.get("from_me") is True:
        source = _str(raw.get("source")) or "unknown"
        if source == "api":
            parsed.ignore("echo")
            return
        text = _content(raw, kind)
        user_id = bare(chat_id)
        if not text or not _DIGITS.match(user_id):
            parsed.ignore("agent_without_text")
            return
        parsed.agent_messages.append(
            AgentMessage(
                message_id=message_id,
                user_id=prefix + user_id if prefix else user_id,
                chat_id=chat_id,
                text=text,
                source=source,
                agent_name=clean_name(raw.get("from_name")) or "Agente",
                timestamp=ts,
            )
        )
        return

    sender = _str(raw.get("from")) or bare(chat_id)
    user_id = bare(sender)
    if not _DIGITS.match(user_id):
        parsed.ignore("malformed")
        return
    if kind in _IGNORED_KINDS:
        parsed.ignore(f"type:{kind}")
        return
    text = _content(raw, kind)
    if text is None:
        parsed.ignore(f"type:{kind}" if kind in KNOWN_KINDS else "type:other")
        return
    name = clean_name(raw.get("chat_name")) or clean_name(raw.get("from_name")) or user_id
    parsed.messages.append(
        CustomerMessage(
            raw,
            encoded,
            InboundMessage(
                message_id=prefix + message_id if prefix else message_id,
                user_id=prefix + user_id if prefix else user_id,
                chat_id=chat_id,
                user_name=name,
                kind=kind,
                text=text,
                timestamp=ts,
                media=_media(raw, kind),
            ),
        )
    )


def _media(raw: dict[str, Any], kind: str) -> MediaRef | None:
    if kind not in _MEDIA_KINDS:
        return None
    body = raw.get(kind)
    if not isinstance(body, dict):
        return None

    size = _finite(body.get("file_size"))
    seconds = _finite(body.get("seconds"))
    return MediaRef(
        media_id=_str(body.get("id")),
        link=_str(body.get("link")),
        mime_type=_str(body.get("mime_type")),
        file_size=int(size) if size is not None and 0 <= size < 2**53 else None,
        seconds=seconds if seconds is not None and seconds >= 0 else None,
        filename=_str(body.get("filename")),
    )


def _field(raw: dict[str, Any], kind: str, key: str) -> str | None:
    body = raw.get(kind)
    if isinstance(body, dict):
        value = body.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _content(raw: dict[str, Any], kind: str) -> str | None:
    """The text a message carries, or a short description; ``None`` if it carries nothing."""
    if kind == "text":
        return _field(raw, "text", "body")
    if kind == "link_preview":
        return _field(raw, "link_preview", "body") or _field(raw, "link_preview", "url")
    if kind in {"voice", "audio"}:
        return "[nota de voz]"
    if kind in {"image", "video", "gif", "short"}:
        caption = _field(raw, kind, "caption")
        label = {"image": "imagen", "gif": "gif"}.get(kind, "video")
        return f"[{label}] {caption}" if caption else f"[{label}]"
    if kind == "document":
        name = _field(raw, "document", "filename")
        caption = _field(raw, "document", "caption")
        parts = [f"[documento: {name}]" if name else "[documento]", caption or ""]
        return " ".join(p for p in parts if p)
    if kind == "sticker":
        return "[sticker]"
    if kind in {"location", "live_location"}:
        loc = raw.get(kind) if isinstance(raw.get(kind), dict) else {}
        lat, lng = _finite(loc.get("latitude")), _finite(loc.get("longitude"))
        where = " ".join(
            str(x) for x in (loc.get("name"), loc.get("address")) if isinstance(x, str) and x
        )
        coords = (
            f"{loc['latitude']},{loc['longitude']}" if lat is not None and lng is not None else ""
        )
        return " ".join(part for part in ("[ubicación]", where, coords) if part)
    if kind in {"contact", "contact_list"}:
        contact = raw.get(kind) if isinstance(raw.get(kind), dict) else {}
        name = contact.get("name") if isinstance(contact.get("name"), str) else ""
        return f"[contacto] {name}".strip()
    if kind == "reply":
        reply = raw.get("reply") if isinstance(raw.get("reply"), dict) else {}
        for key in ("buttons_reply", "list_reply"):
            choice = reply.get(key)
            if isinstance(choice, dict) and isinstance(choice.get("title"), str):
                return choice["title"].strip() or None
        return None
    if kind == "interactive":
        return _field(raw, "interactive", "body") or "[mensaje interactivo]"
    if kind == "poll":
        return _field(raw, "poll", "title") or "[encuesta]"
    if kind == "product":
        return "[producto del catálogo]"
    if kind == "group_invite":
        return "[invitación a un grupo]"
    # Reactions and anything else: the original ignored them silently; we ignore them on the
    # record (counted under "type:<kind>") because they carry no request for the bot.
    return _field(raw, kind, "body")


def _parse_presence(raw: Any, parsed: ParsedWebhook, prefix: str = "") -> None:
    if not isinstance(raw, dict):
        parsed.ignore("malformed_presence")
        return
    contact, status = _str(raw.get("contact_id")), _str(raw.get("status"))
    if not contact or not status:
        parsed.ignore("malformed_presence")
        return
    user_id = bare(contact)
    status = status.lower()
    if not _DIGITS.match(user_id) or status not in PRESENCE_STATUSES:
        parsed.ignore("malformed_presence")
        return
    parsed.presences.append(
        Presence(user_id=prefix + user_id if prefix else user_id, status=status)
    )
