"""The typed events a user actor receives.

The gateway turns Whapi webhooks into these; a user actor never sees raw JSON. The user key
is the bare phone digits (Whapi's ``from`` for inbound messages, ``contact_id`` for presences,
the digits of ``chat_id`` for our own and an agent's ``from_me`` messages), as in the original
bot. ``chat_id`` is kept exactly as received (``…@s.whatsapp.net`` or ``…@lid``) for replies.
"""

from __future__ import annotations

import attrs
import trio


@attrs.frozen
class MediaRef:
    """A piece of media attached to a message: Whapi's media id and, with auto-download, a link."""

    media_id: str | None
    link: str | None
    mime_type: str | None
    file_size: int | None = None
    seconds: float | None = None
    filename: str | None = None


@attrs.frozen
class InboundMessage:
    """A customer's WhatsApp message for the bot.

    ``kind`` is Whapi's message type (``text``, ``voice``, ``image``, …); ``text`` is what the
    message says as text (body, caption, or a description for content without text).
    """

    message_id: str
    user_id: str
    chat_id: str
    user_name: str
    kind: str
    text: str
    timestamp: float
    media: MediaRef | None = None

    @property
    def is_voice(self) -> bool:
        return self.kind in {"voice", "audio"}


@attrs.frozen
class AgentMessage:
    """A ``from_me`` message typed by a human on the business phone or WhatsApp Web."""

    message_id: str
    user_id: str
    chat_id: str
    text: str
    source: str
    agent_name: str
    timestamp: float


@attrs.frozen
class Presence:
    """A presence update of a customer (``typing``, ``recording``, ``online``, ``offline``, …)."""

    user_id: str
    status: str


@attrs.define(eq=False)
class Control:
    """An operator's command for one user actor (admin API): pause, resume or reset.

    The actor owns the user's record, so commands go through its mailbox like everything
    else; the caller waits on ``done`` and reads ``result``.
    """

    action: str
    seconds: float | None = None
    done: trio.Event = attrs.Factory(trio.Event)
    result: dict[str, object] = attrs.Factory(dict)


UserEvent = InboundMessage | AgentMessage | Presence | Control
