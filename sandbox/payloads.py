"""Builders of inbound Whapi webhook payloads for tests and benchmarks (pure functions).

Shapes follow Whapi's webhook format (messages, presences, statuses envelopes with
``event: {type, event}`` and ``channel_id``). Message ids are unique by default and look like
Whapi ids (``<20 upper-hex>-<8 upper-hex>``), which also satisfies the id pattern Whapi enforces
on ``quoted``/``edit``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

DEFAULT_CHANNEL_ID = "SANDBOX-CHANNEL"
DEFAULT_USER = "573001234567"
VOICE_MIME = "audio/ogg; codecs=opus"


def new_message_id() -> str:
    """A fresh Whapi-style message id."""
    raw = uuid.uuid4().hex.upper()
    return f"{raw[:20]}-{raw[20:28]}"


def new_media_id() -> str:
    """A fresh media id (hex, like Whapi's)."""
    return uuid.uuid4().hex


def chat_id_for(user: str) -> str:
    """The personal chat id of a phone number (chat ids pass through unchanged)."""
    return user if "@" in user else f"{user}@s.whatsapp.net"


def _base(
    user: str,
    type: str,
    *,
    id: str | None,
    from_me: bool,
    source: str,
    chat_id: str | None,
    from_name: str,
    timestamp: int | None,
) -> dict[str, Any]:
    return {
        "id": id or new_message_id(),
        "from_me": from_me,
        "type": type,
        "chat_id": chat_id or chat_id_for(user),
        "timestamp": int(time.time()) if timestamp is None else timestamp,
        "source": source,
        "from": user.split("@", 1)[0],
        "from_name": from_name,
    }


def text_message(
    user: str = DEFAULT_USER,
    body: str = "hola",
    *,
    id: str | None = None,
    from_me: bool = False,
    source: str = "mobile",
    chat_id: str | None = None,
    from_name: str = "Ana",
    timestamp: int | None = None,
    type: str = "text",
) -> dict[str, Any]:
    """A text message (``type`` can be overridden, e.g. to ``link_preview``)."""
    message = _base(
        user,
        type,
        id=id,
        from_me=from_me,
        source=source,
        chat_id=chat_id,
        from_name=from_name,
        timestamp=timestamp,
    )
    if type == "link_preview":
        message["link_preview"] = {"body": body, "url": body}
    else:
        message["text"] = {"body": body}
    return message


def voice_message(
    user: str = DEFAULT_USER,
    *,
    link: str | None = None,
    media_id: str | None = None,
    seconds: int = 3,
    id: str | None = None,
    from_me: bool = False,
    source: str = "mobile",
    chat_id: str | None = None,
    from_name: str = "Ana",
    timestamp: int | None = None,
    file_size: int = 4096,
) -> dict[str, Any]:
    """A voice note (``voice: {id, link, mime_type, seconds, file_size}``)."""
    message = _base(
        user,
        "voice",
        id=id,
        from_me=from_me,
        source=source,
        chat_id=chat_id,
        from_name=from_name,
        timestamp=timestamp,
    )
    voice: dict[str, Any] = {
        "id": media_id or new_media_id(),
        "mime_type": VOICE_MIME,
        "file_size": file_size,
        "seconds": seconds,
    }
    if link is not None:
        voice["link"] = link
    message["voice"] = voice
    return message


def image_message(
    user: str = DEFAULT_USER,
    *,
    caption: str | None = None,
    link: str | None = None,
    media_id: str | None = None,
    mime_type: str = "image/jpeg",
    id: str | None = None,
    from_me: bool = False,
    source: str = "mobile",
    chat_id: str | None = None,
    from_name: str = "Ana",
    timestamp: int | None = None,
    file_size: int = 20480,
) -> dict[str, Any]:
    """An image message with optional caption and link."""
    message = _base(
        user,
        "image",
        id=id,
        from_me=from_me,
        source=source,
        chat_id=chat_id,
        from_name=from_name,
        timestamp=timestamp,
    )
    image: dict[str, Any] = {
        "id": media_id or new_media_id(),
        "mime_type": mime_type,
        "file_size": file_size,
        "width": 640,
        "height": 480,
    }
    if caption is not None:
        image["caption"] = caption
    if link is not None:
        image["link"] = link
    message["image"] = image
    return message


def document_message(
    user: str = DEFAULT_USER,
    *,
    filename: str = "documento.pdf",
    caption: str | None = None,
    link: str | None = None,
    media_id: str | None = None,
    mime_type: str = "application/pdf",
    id: str | None = None,
    from_me: bool = False,
    source: str = "mobile",
    chat_id: str | None = None,
    from_name: str = "Ana",
    timestamp: int | None = None,
) -> dict[str, Any]:
    """A document message."""
    message = _base(
        user,
        "document",
        id=id,
        from_me=from_me,
        source=source,
        chat_id=chat_id,
        from_name=from_name,
        timestamp=timestamp,
    )
    document: dict[str, Any] = {
        "id": media_id or new_media_id(),
        "mime_type": mime_type,
        "file_size": 10240,
        "filename": filename,
    }
    if caption is not None:
        document["caption"] = caption
    if link is not None:
        document["link"] = link
    message["document"] = document
    return message


def location_message(
    user: str = DEFAULT_USER,
    *,
    latitude: float = 4.711,
    longitude: float = -74.072,
    address: str | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """A location message."""
    message = text_message(user, "", **kwargs, type="location")
    message.pop("text", None)
    message["location"] = {"latitude": latitude, "longitude": longitude}
    if address is not None:
        message["location"]["address"] = address
    return message


def group_message(
    user: str = DEFAULT_USER,
    body: str = "hola grupo",
    *,
    group_id: str = "120363025000000000@g.us",
    **kwargs: Any,
) -> dict[str, Any]:
    """A text message in a group chat (``chat_id`` ends in ``@g.us``, ``from`` is the sender)."""
    return text_message(user, body, chat_id=group_id, **kwargs)


def agent_message(
    user: str = DEFAULT_USER,
    body: str = "Hola, soy Carlos del equipo",
    *,
    business_number: str = "573009999999",
    source: str = "mobile",
    **kwargs: Any,
) -> dict[str, Any]:
    """A message a human agent typed on the business phone (``from_me`` and not from the API)."""
    message = text_message(
        user, body, from_me=True, source=source, chat_id=chat_id_for(user), **kwargs
    )
    message["from"] = business_number
    return message


def presence(user: str = DEFAULT_USER, status: str = "typing") -> dict[str, Any]:
    """A presence entry (``contact_id`` is digits, not a chat id)."""
    return {"contact_id": user.split("@", 1)[0], "status": status}


def webhook(
    messages: Iterable[Mapping[str, Any]] = (),
    *,
    channel_id: str = DEFAULT_CHANNEL_ID,
    event: str = "post",
) -> dict[str, Any]:
    """A ``messages`` webhook envelope (``event="put"``/``"patch"`` for edits and deletes)."""
    return {
        "messages": [dict(m) for m in messages],
        "event": {"type": "messages", "event": event},
        "channel_id": channel_id,
    }


def presence_webhook(
    presences: Iterable[Mapping[str, Any]], *, channel_id: str = DEFAULT_CHANNEL_ID
) -> dict[str, Any]:
    """A ``presences`` webhook envelope."""
    return {
        "presences": [dict(p) for p in presences],
        "event": {"type": "presences", "event": "post"},
        "channel_id": channel_id,
    }


def status_webhook(
    message_id: str,
    status: str = "delivered",
    *,
    recipient: str = DEFAULT_USER,
    channel_id: str = DEFAULT_CHANNEL_ID,
    timestamp: int | None = None,
) -> dict[str, Any]:
    """A ``statuses`` webhook (delivery acks; ``timestamp`` is a string, as Whapi sends it)."""
    return {
        "statuses": [
            {
                "id": message_id,
                "code": {"sent": 2, "delivered": 3, "read": 4, "played": 5}.get(status, 1),
                "status": status,
                "recipient_id": chat_id_for(recipient),
                "timestamp": str(int(time.time()) if timestamp is None else timestamp),
            }
        ],
        "event": {"type": "statuses", "event": "post"},
        "channel_id": channel_id,
    }
