"""FakeWhapi: a loopback Whapi.Cloud gateway for tests, benchmarks and the local mode.

Serves the Whapi REST endpoints wabot uses (send text/voice/image/document, presences, chats,
message history, media, labels) with bearer auth and request validation, and delivers the
``from_me`` echo webhook of every sent message to `webhook_url`, like the real gateway does.

One fake can stand for several numbers (wabot's channels): ``add_channel`` gives it another
token, with its own ``channel_id`` and echo webhook; every send records the token it came
with (``SentMessage.token``), and ``revoke`` makes a token's requests answer 401.

With ``send_latency`` (``sandbox.realism``, off by default) every send (``POST /messages/*``)
first waits a draw from that seeded lognormal (a ``trio.sleep``: other requests go on), kept
as the recorded call's ``injected_latency``.
"""

from __future__ import annotations

import base64
import functools
import itertools
import json
import random
import time
from collections import deque
from collections.abc import Mapping
from typing import Any, ClassVar

import attrs
import httpx
import trio

from sandbox.base import (
    BoundedDict,
    FakeServer,
    Request,
    Response,
    Route,
    json_response,
    route,
)
from sandbox.faults import FaultRule, Faults
from sandbox.payloads import chat_id_for, new_media_id, new_message_id
from sandbox.realism import Lognormal

DEFAULT_BUSINESS_NUMBER = "573009999999"
DEFAULT_LABELS: tuple[tuple[str, str, str], ...] = (
    ("1", "New customer", "lightskyblue"),
    ("2", "New order", "gold"),
    ("3", "Pending payment", "salmon"),
    ("4", "Paid", "limegreen"),
    ("5", "Order complete", "mediumpurple"),
)
MEDIA_TYPES = ("voice", "image", "document")


@attrs.define
class SentMessage:
    """A message the bot sent through the fake.

    `seq` numbers all sends from 0; `chat_seq` numbers the sends to this chat from 0.
    """

    seq: int
    chat_seq: int
    id: str
    to: str
    chat_id: str
    type: str
    body: str | None = None
    media: str | None = None
    caption: str | None = None
    filename: str | None = None
    mime_type: str | None = None
    typing_time: float | None = None
    recording_time: float | None = None
    seconds: int | None = None
    quoted: str | None = None
    payload: dict[str, Any] = attrs.field(factory=dict)
    at: float = 0.0
    #: The bearer token of the send: which channel (number) sent it.
    token: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict (the control API; media is shortened)."""
        data = attrs.asdict(self)
        if self.media is not None and len(self.media) > 200:
            data["media"] = self.media[:200] + "..."
            data["payload"] = {**self.payload, "media": data["media"]}
        return data


@attrs.define
class StoredMedia:
    """Bytes served by ``GET /media/{id}`` and ``GET /files/{id}``."""

    content: bytes
    mime_type: str


@attrs.define
class FakeChannel:
    """Another number of the fake: its token, its ``channel_id`` and where its echoes go."""

    token: str
    channel_id: str
    webhook_url: str | None = None
    webhook_headers: dict[str, str] = attrs.Factory(dict)


@attrs.define
class EchoError:
    """A failed echo webhook delivery."""

    message_id: str
    error: str
    at: float


class FakeWhapi(FakeServer):
    """A loopback Whapi gateway. Start it with ``await nursery.start(fake.serve)``.

    ``webhook_url``/``webhook_headers`` (settable at any time) say where echo webhooks go;
    ``echo=False`` disables them; ``echo_first=True`` delivers the echo *before* answering the
    send (the race the original bot lost); ``echo_timeout`` bounds each delivery. Chats, history,
    media and presence subscriptions are bounded (oldest entries dropped).
    """

    SCHEMAS: ClassVar[tuple[str, ...]] = (
        "whapi_messages_text",
        "whapi_messages_voice",
        "whapi_messages_image",
        "whapi_messages_document",
        "whapi_presence_put",
        "whapi_presence_me",
    )

    def __init__(
        self,
        token: str,
        *,
        webhook_url: str | None = None,
        webhook_headers: Mapping[str, str] | None = None,
        faults: Faults | None = None,
        channel_id: str = "SANDBOX-CHANNEL",
        max_calls: int = 100_000,
        echo: bool = True,
        echo_first: bool = False,
        echo_timeout: float = 5.0,
        business_number: str = DEFAULT_BUSINESS_NUMBER,
        max_history_per_chat: int = 500,
        max_chats: int = 100_000,
        send_latency: Lognormal | None = None,
        seed: int = 1,
    ) -> None:
        super().__init__(token, faults=faults, max_calls=max_calls)
        #: Latency of every send (None: none); settable while serving.
        self.send_latency = send_latency
        self.rng = random.Random(seed)
        self.webhook_url = webhook_url
        self.webhook_headers: dict[str, str] = dict(webhook_headers or {})
        self.channel_id = channel_id
        self.echo = echo
        self.echo_first = echo_first
        self.echo_timeout = echo_timeout
        self.business_number = business_number
        self.max_history_per_chat = max_history_per_chat
        self.chats: BoundedDict[str, dict[str, Any]] = BoundedDict(max_chats)
        self.history: BoundedDict[str, deque[dict[str, Any]]] = BoundedDict(max_chats)
        self.labels: dict[str, dict[str, Any]] = {
            label_id: {"id": label_id, "name": name, "color": color}
            for label_id, name, color in DEFAULT_LABELS
        }
        self.media: BoundedDict[str, StoredMedia] = BoundedDict(10_000)
        self.presence_subscriptions: BoundedDict[str, float] = BoundedDict(max_chats)
        self._sent: deque[SentMessage] = deque(maxlen=max_calls)
        self._seq = itertools.count()
        self._sent_count = 0
        self._chat_counts: BoundedDict[str, int] = BoundedDict(max_chats)
        self._sent_changed = trio.Event()
        self._presences: deque[tuple[str, str]] = deque(maxlen=max_calls)
        self._echo_errors: deque[EchoError] = deque(maxlen=10_000)
        self.echoes_delivered = 0
        self._client: httpx.AsyncClient | None = None
        #: The other numbers, by token (``add_channel``); tokens ``revoke`` turned away.
        self.channels: dict[str, FakeChannel] = {}
        self.revoked: set[str] = set()

    # ----------------------------------------------------------------- test helpers
    def add_channel(
        self,
        token: str,
        channel_id: str,
        *,
        webhook_url: str | None = None,
        webhook_headers: Mapping[str, str] | None = None,
    ) -> FakeChannel:
        """Take ``token`` too, as the number ``channel_id`` whose echoes go to ``webhook_url``."""
        channel = FakeChannel(token, channel_id, webhook_url, dict(webhook_headers or {}))
        self.channels[token] = channel
        return channel

    def revoke(self, token: str) -> None:
        """From now on a request with ``token`` answers 401, as Whapi does for a revoked one."""
        self.revoked.add(token)

    def sent_with(self, token: str) -> list[SentMessage]:
        """The sends made with ``token``."""
        return [m for m in self._sent if m.token == token]

    def _authorized(self, headers: Mapping[str, str]) -> bool:
        token = _bearer(headers)
        if token is None or token in self.revoked:
            return False
        return token == self.token or token in self.channels

    @property
    def sent(self) -> list[SentMessage]:
        """Messages sent through the fake, oldest first."""
        return list(self._sent)

    def sent_to(self, chat_id: str) -> list[SentMessage]:
        """Messages sent to a chat (a phone number or chat id)."""
        wanted = chat_id_for(chat_id)
        return [m for m in self._sent if m.chat_id == wanted]

    @property
    def presences_put(self) -> list[tuple[str, str]]:
        """(entry_id, presence) of every accepted ``PUT /presences/{id}``, oldest first."""
        return list(self._presences)

    @property
    def echo_errors(self) -> list[EchoError]:
        """Echo webhook deliveries that failed."""
        return list(self._echo_errors)

    async def wait_sent(
        self,
        n: int,
        *,
        to: str | None = None,
        timeout: float = 10,  # noqa: ASYNC109 - the documented test-helper signature
    ) -> list[SentMessage]:
        """Wait until at least `n` messages were sent (to chat `to`); return them."""

        def current() -> list[SentMessage]:
            return self.sent_to(to) if to is not None else self.sent

        with trio.move_on_after(timeout):
            while len(found := current()) < n:
                await self._sent_changed.wait()
            return found
        found = current()
        listing = "\n".join(
            f"  #{m.seq} to={m.to} type={m.type} body={(m.body or m.media or '')[:80]!r}"
            for m in self.sent[-20:]
        )
        target = f" to {to}" if to is not None else ""
        raise TimeoutError(
            f"waited {timeout}s for {n} sent message(s){target}, got {len(found)}; "
            f"last sent messages:\n{listing or '  (none)'}"
        )

    def set_chat(
        self,
        chat_id: str,
        *,
        name: str | None = None,
        labels: list[Mapping[str, Any]] | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Define what ``GET /chats/{chat_id}`` returns (labels: [{id, name, color}])."""
        chat_id = chat_id_for(chat_id)
        chat: dict[str, Any] = {
            "id": chat_id,
            "name": name if name is not None else chat_id.split("@", 1)[0],
            "type": "group" if chat_id.endswith("@g.us") else "contact",
            "timestamp": int(time.time()),
            "unread": 0,
            "labels": [dict(label) for label in labels or ()],
            **extra,
        }
        self.chats[chat_id] = chat
        return chat

    def add_history(self, chat_id: str, message: Mapping[str, Any]) -> None:
        """Add a message to a chat's history (``GET /messages/list/{chat_id}``)."""
        chat_id = chat_id_for(chat_id)
        entries = self.history.get(chat_id)
        if entries is None:
            entries = deque(maxlen=self.max_history_per_chat)
            self.history[chat_id] = entries
        entries.append({"chat_id": chat_id, **message})

    def add_media(self, media_id: str, content: bytes, mime_type: str) -> str:
        """Register media for ``GET /media/{id}``; returns its no-auth ``link`` URL."""
        self.media[media_id] = StoredMedia(content, mime_type)
        if self.base_url is None:
            raise RuntimeError("add_media needs a serving fake (the link includes its URL)")
        return f"{self.base_url}/files/{media_id}"

    def reset(self) -> None:
        """Forget faults, recorded calls, sent messages, presences and echo errors."""
        super().reset()
        self._sent.clear()
        self._presences.clear()
        self._echo_errors.clear()

    # ----------------------------------------------------------------- server plumbing
    def error_response(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """Whapi's error shape: ``{"error": {"code", "message", "details"}}``."""
        details = f"parameter: {param}" if param else message
        return json_response(
            status, {"error": {"code": status, "message": message, "details": details}}, headers
        )

    def routes(self) -> list[Route]:
        """Whapi endpoints served by the fake."""
        return [
            route("POST", "/messages/text", self._send_text, schema="whapi_messages_text"),
            *(
                route(
                    "POST",
                    f"/messages/{kind}",
                    self._send_media,
                    schema=f"whapi_messages_{kind}",
                )
                for kind in MEDIA_TYPES
            ),
            route("GET", "/messages/list/{chat_id}", self._list_messages, body="none"),
            route("PUT", "/presences/me", self._presence_me, schema="whapi_presence_me"),
            route("PUT", "/presences/{entry_id}", self._presence_put, schema="whapi_presence_put"),
            route("POST", "/presences/{entry_id}", self._presence_subscribe, body="none"),
            route("GET", "/chats/{chat_id}", self._get_chat, body="none"),
            route("GET", "/media/{media_id}", self._get_media, body="none"),
            route("GET", "/files/{media_id}", self._get_file, body="none", auth=False),
            route("GET", "/labels", self._get_labels, body="none"),
            route("POST", "/labels/{label_id}/{assoc_id}", self._label_add, body="none"),
            route("DELETE", "/labels/{label_id}/{assoc_id}", self._label_remove, body="none"),
            route("GET", "/health", self._health, body="none"),
        ]

    async def started(self, nursery: trio.Nursery) -> None:
        """Open the echo webhook client."""
        self._client = httpx.AsyncClient(timeout=self.echo_timeout)

    async def stopping(self) -> None:
        """Close the echo client."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # ----------------------------------------------------------------- sends
    def _record_send(
        self, kind: str, data: dict[str, Any], token: str | None = None
    ) -> tuple[SentMessage, dict[str, Any]]:
        to = data["to"]
        chat_id = chat_id_for(to)
        message_id = new_message_id()
        now = int(time.time())
        chat_seq = self._chat_counts.get(chat_id, 0)
        self._chat_counts[chat_id] = chat_seq + 1
        sent = SentMessage(
            seq=next(self._seq),
            chat_seq=chat_seq,
            id=message_id,
            to=to,
            chat_id=chat_id,
            type=kind,
            body=data.get("body"),
            media=data.get("media"),
            caption=data.get("caption"),
            filename=data.get("filename"),
            mime_type=data.get("mime_type"),
            typing_time=data.get("typing_time"),
            recording_time=data.get("recording_time"),
            seconds=data.get("seconds"),
            quoted=data.get("quoted"),
            payload=data,
            at=trio.current_time(),
            token=token,
        )
        message: dict[str, Any] = {
            "id": message_id,
            "from_me": True,
            "type": kind,
            "chat_id": chat_id,
            "timestamp": now,
            "source": "api",
            "status": "pending",
        }
        if kind == "text":
            message["text"] = {"body": data["body"]}
        else:
            content: dict[str, Any] = {
                "id": new_media_id(),
                "mime_type": data.get("mime_type") or _guess_mime(kind, data["media"]),
                "file_size": _media_size(data["media"]),
            }
            for key in ("caption", "filename", "seconds"):
                if key in data:
                    content[key] = data[key]
            message[kind] = content
        if "quoted" in data:
            message["context"] = {"quoted_id": data["quoted"]}
        self._sent.append(sent)
        self._sent_count += 1
        self.add_history(chat_id, {**message, "from": self.business_number})
        self._sent_changed.set()
        self._sent_changed = trio.Event()
        return sent, message

    async def _deliver(self, data: dict[str, Any], kind: str, token: str | None = None) -> Response:
        _sent, message = self._record_send(kind, data, token)
        response = json_response(200, {"sent": True, "message": message})
        channel = self.channels.get(token) if token is not None else None
        if self.echo and (channel.webhook_url if channel else self.webhook_url):
            if self.echo_first:
                await self._echo(message, channel)
            else:
                response.background = functools.partial(self._echo, message, channel)
        return response

    async def _send_delay(self, request: Request) -> None:
        """A send's own latency (``send_latency``), recorded on its call."""
        if self.send_latency is None:
            return
        delay = self.send_latency.sample(self.rng)
        if request.call is not None:
            request.call.injected_latency = delay
        await trio.sleep(delay)

    async def _send_text(self, request: Request, fault: FaultRule | None) -> Response:
        await self._send_delay(request)
        return await self._deliver(request.json, "text", _bearer(request.headers))

    async def _send_media(self, request: Request, fault: FaultRule | None) -> Response:
        await self._send_delay(request)
        return await self._deliver(
            request.json, request.path.rsplit("/", 1)[1], _bearer(request.headers)
        )

    def echo_payload(
        self, message: Mapping[str, Any], channel: FakeChannel | None = None
    ) -> dict[str, Any]:
        """The ``from_me`` webhook Whapi posts for a message the API sent."""
        return {
            "messages": [{**message, "from": self.business_number}],
            "event": {"type": "messages", "event": "post"},
            "channel_id": channel.channel_id if channel else self.channel_id,
        }

    async def _echo(self, message: Mapping[str, Any], channel: FakeChannel | None = None) -> None:
        url = channel.webhook_url if channel else self.webhook_url
        client = self._client
        if not url or client is None:
            return
        headers = {
            **(channel.webhook_headers if channel else self.webhook_headers),
            "Content-Type": "application/json",
        }
        try:
            with trio.fail_after(self.echo_timeout):
                reply = await client.post(
                    url, json=self.echo_payload(message, channel), headers=headers
                )
            if reply.status_code >= 300:
                raise RuntimeError(f"webhook answered HTTP {reply.status_code}")
            self.echoes_delivered += 1
        except (httpx.HTTPError, trio.TooSlowError, RuntimeError) as exc:
            self._echo_errors.append(
                EchoError(
                    str(message.get("id")), f"{type(exc).__name__}: {exc}", trio.current_time()
                )
            )

    # ----------------------------------------------------------------- other endpoints
    async def _presence_put(self, request: Request, fault: FaultRule | None) -> Response:
        self._presences.append((request.params["entry_id"], request.json["presence"]))
        return json_response(200, {"success": True})

    async def _presence_me(self, request: Request, fault: FaultRule | None) -> Response:
        self._presences.append(("me", request.json["presence"]))
        return json_response(200, {"success": True})

    async def _presence_subscribe(self, request: Request, fault: FaultRule | None) -> Response:
        entry_id = request.params["entry_id"]
        if entry_id in self.presence_subscriptions:
            return self.error_response(409, "Already subscribed to presence updates")
        self.presence_subscriptions[entry_id] = trio.current_time()
        return json_response(200, {"success": True})

    async def _get_chat(self, request: Request, fault: FaultRule | None) -> Response:
        chat_id = request.params["chat_id"]
        chat = self.chats.get(chat_id_for(chat_id))
        if chat is None:
            return self.error_response(404, "Chat not found", param="ChatID")
        result = dict(chat)
        history = self.history.get(chat["id"])
        if history:
            result["last_message"] = history[-1]
        return json_response(200, result)

    async def _list_messages(self, request: Request, fault: FaultRule | None) -> Response:
        chat_id = chat_id_for(request.params["chat_id"])
        try:
            count = int(float(request.query.get("count", "100")))
            offset = int(float(request.query.get("offset", "0")))
        except ValueError:
            return self.error_response(400, "count and offset must be numbers", param="count")
        if count < 1 or count > 500 or offset < 0:
            return self.error_response(400, "count must be 1..500", param="count")
        entries = list(reversed(self.history.get(chat_id, ())))
        page = entries[offset : offset + count]
        return json_response(
            200, {"messages": page, "count": len(page), "total": len(entries), "offset": offset}
        )

    async def _get_media(self, request: Request, fault: FaultRule | None) -> Response:
        return self._media_response(request.params["media_id"])

    async def _get_file(self, request: Request, fault: FaultRule | None) -> Response:
        return self._media_response(request.params["media_id"])

    def _media_response(self, media_id: str) -> Response:
        media = self.media.get(media_id)
        if media is None:
            return self.error_response(404, "Media not found", param="MediaID")
        return Response(status=200, body=media.content, content_type=media.mime_type)

    async def _get_labels(self, request: Request, fault: FaultRule | None) -> Response:
        counts: dict[str, int] = {}
        for chat in self.chats.values():
            for label in chat.get("labels", ()):
                counts[label.get("id")] = counts.get(label.get("id"), 0) + 1
        labels = [{**label, "count": counts.get(label["id"], 0)} for label in self.labels.values()]
        return json_response(200, labels)

    async def _label_add(self, request: Request, fault: FaultRule | None) -> Response:
        label = self.labels.get(request.params["label_id"])
        if label is None:
            return self.error_response(404, "Label not found", param="LabelID")
        chat_id = chat_id_for(request.params["assoc_id"])
        chat = self.chats.get(chat_id) or self.set_chat(chat_id)
        if all(existing.get("id") != label["id"] for existing in chat["labels"]):
            chat["labels"].append(dict(label))
        return json_response(200, {"success": True})

    async def _label_remove(self, request: Request, fault: FaultRule | None) -> Response:
        label_id = request.params["label_id"]
        if label_id not in self.labels:
            return self.error_response(404, "Label not found", param="LabelID")
        chat = self.chats.get(chat_id_for(request.params["assoc_id"]))
        if chat is not None:
            chat["labels"] = [x for x in chat["labels"] if x.get("id") != label_id]
        return json_response(200, {"success": True})

    async def _health(self, request: Request, fault: FaultRule | None) -> Response:
        return json_response(
            200,
            {
                "channel_id": self.channel_id,
                "status": {"code": 4, "text": "AUTH"},
                "user": {"id": self.business_number, "name": "Sandbox Business"},
            },
        )

    # ----------------------------------------------------------------- control API
    async def control(self, request: Request) -> Response | None:
        """Extra control endpoints: ``GET /__fake__/sent``, ``POST /__fake__/config``."""
        name = request.path.rsplit("/", 1)[1]
        if request.method == "GET" and name == "sent":
            return await self._control_sent(request)
        if request.method == "POST" and name == "config":
            return self._control_config(request)
        if request.method == "POST" and name == "chats":
            data = _json_object(request.body)
            if data is None or not isinstance(data.get("chat_id"), str):
                return json_response(400, {"error": "body must be {chat_id, name?, labels?}"})
            chat_id = data.pop("chat_id")
            return json_response(200, self.set_chat(chat_id, **data))
        if request.method == "POST" and name == "media":
            data = _json_object(request.body)
            if data is None or not {"media_id", "base64", "mime_type"} <= set(data):
                return json_response(400, {"error": "body must be {media_id, base64, mime_type}"})
            link = self.add_media(
                data["media_id"], base64.b64decode(data["base64"]), data["mime_type"]
            )
            return json_response(200, {"link": link})
        return None

    async def _control_sent(self, request: Request) -> Response:
        """Long-poll sends. With ``to``, ``after`` and ``next`` count sends to that chat
        (``chat_seq``); without it they count all sends (``seq``)."""
        to = request.query.get("to")
        chat = chat_id_for(to) if to else None
        try:
            after = int(request.query.get("after", "0"))
            wait = min(float(request.query.get("wait", "0")), 300.0)
        except ValueError:
            return json_response(400, {"error": "after must be an int, wait a number"})

        def matching() -> list[SentMessage]:
            if chat is not None:
                return [m for m in self.sent_to(chat) if m.chat_seq >= after]
            return [m for m in self._sent if m.seq >= after]

        with trio.move_on_after(wait):
            while not matching():
                await self._sent_changed.wait()
        found = matching()
        following = self._chat_counts.get(chat, 0) if chat is not None else self._sent_count
        return json_response(200, {"messages": [m.to_json() for m in found], "next": following})

    def _control_config(self, request: Request) -> Response:
        data = _json_object(request.body)
        if data is None:
            return json_response(400, {"error": "body must be a JSON object"})
        if "webhook_url" in data:
            self.webhook_url = data["webhook_url"]
        if "webhook_headers" in data:
            self.webhook_headers = dict(data["webhook_headers"] or {})
        if "echo" in data:
            self.echo = bool(data["echo"])
        return json_response(
            200,
            {
                "webhook_url": self.webhook_url,
                "webhook_headers": self.webhook_headers,
                "echo": self.echo,
            },
        )


def _bearer(headers: Mapping[str, str]) -> str | None:
    """The bearer token of a request's headers, if it has one."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token if scheme == "Bearer" and token else None


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _guess_mime(kind: str, media: str) -> str:
    if media.startswith("data:"):
        return media[5:].split(";", 1)[0].split(",", 1)[0] or "application/octet-stream"
    return {
        "voice": "audio/ogg; codecs=opus",
        "image": "image/jpeg",
        "document": "application/octet-stream",
    }[kind]


def _media_size(media: str) -> int:
    if media.startswith("data:") and "," in media:
        return len(media.split(",", 1)[1]) * 3 // 4
    if media.startswith(("http://", "https://")):
        return 0
    return len(media) * 3 // 4
