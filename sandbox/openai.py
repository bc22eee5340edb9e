"""FakeOpenAI: a loopback OpenAI API (Responses, Conversations, audio) for tests and benchmarks.

It speaks enough of the real API for the official ``openai`` SDK: conversations and their
items (created, listed and deleted one by one), ``POST /v1/responses`` (answers come from a
pluggable `Responder`, by default `default_responder`, which also calls
``check_availability``; one response in flight per conversation, else 400
``conversation_locked``; input and output items are appended to the conversation only after
completion), transcriptions (multipart) and speech (binary audio),
the Realtime API's websocket on the same port (``fake.realtime``, see ``sandbox.realtime``),
and files, vector stores and a deterministic ``file_search`` (``fake.knowledge``, see
``sandbox.openai_knowledge``): a request whose ``file_search`` tool finds a document's
sentence gets a ``file_search_call`` item, and the default responder quotes the sentence.

Realism (``sandbox.realism``, off by default): ``latency`` delays every ``responses.create``
by a draw from a seeded lognormal (a ``trio.sleep`` in the handler, so other requests go on),
recorded per call in `model_calls` (`ModelCall.latency`) and on the recorded `Call`
(``injected_latency``); ``rate_limits`` is the account's requests/tokens per minute: every
response then carries OpenAI's ``x-ratelimit-*`` headers, a ``responses.create`` past a limit
is answered 429 ``rate_limit_exceeded`` (type ``requests`` or ``tokens``) with ``retry-after``
and ``retry-after-ms``, and the tokens a call counts (its request body at four characters a
token, plus its reply's) are the ``usage`` it reports. ``GET /__fake__/model`` returns both
(``stats`` and the recent `model_calls`).

Given a ``state_file``, it keeps its conversations, files and vector stores there (loaded at
construction, written a moment after each change and when it stops), so a sandbox restarted
on the same data directory still knows the conversations its customers' records name and the
documents it synced, as the real service would.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import random
import re
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from pathlib import Path
from typing import Any, ClassVar

import attrs
import trio

from sandbox.base import BoundedDict, FakeServer, Request, Response, Route, json_response, route
from sandbox.faults import FaultRule, Faults
from sandbox.openai_knowledge import Hit, KnowledgeBase
from sandbox.realism import Lognormal, RateLimiter, Refusal
from sandbox.realism import estimate_tokens as estimate_body_tokens
from sandbox.realtime import FakeRealtime

DEFAULT_TRANSCRIPT = "transcripción de prueba"
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "invalid_request_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    429: "requests",
}
ERROR_CODES = {
    missing: code
    for missing, code in (
        ("missing", "missing_required_parameter"),
        ("unknown", "unknown_parameter"),
        ("type", "invalid_type"),
        ("value", "invalid_value"),
    )
}
AUDIO_CONTENT_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}
SIMPLE_TRANSCRIPTION_FORMATS = frozenset({"json", "text"})
#: How soon after a change the conversations are written to ``state_file``.
STATE_FLUSH_SECONDS = 0.5

log = logging.getLogger("sandbox.openai")

ResponderResult = str | list[dict[str, Any]]
Responder = Callable[["ResponseRequest"], ResponderResult | Awaitable[ResponderResult]]


def new_id(prefix: str) -> str:
    """An OpenAI-style id: ``<prefix>_<48 hex>``."""
    return f"{prefix}_{secrets.token_hex(24)}"


def item_texts(item: Mapping[str, Any]) -> list[str]:
    """The text parts of a message item (string content or input_text/output_text parts)."""
    content = item.get("content")
    if isinstance(content, str):
        return [content]
    texts: list[str] = []
    for part in content or ():
        if isinstance(part, Mapping) and isinstance(part.get("text"), str):
            texts.append(part["text"])
    return texts


@attrs.define
class ResponseRequest:
    """What a responder sees: the parsed body, the conversation context and the new input."""

    body: dict[str, Any]
    model: str
    instructions: str | None
    conversation_id: str | None
    prior_items: list[dict[str, Any]]
    input_items: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    #: What the request's ``file_search`` tool found for the user's text, best first.
    file_search: list[Hit] = attrs.Factory(list)

    @property
    def last_user_text(self) -> str | None:
        """The text of the last user message in the input (joined parts), if any."""
        for item in reversed(self.input_items):
            if item.get("type") == "message" and item.get("role") == "user":
                texts = item_texts(item)
                if texts:
                    return "\n".join(texts)
        return None

    @property
    def has_image(self) -> bool:
        """Whether the input carries an image part."""
        return any(
            isinstance(part, Mapping) and part.get("type") == "input_image"
            for item in self.input_items
            if isinstance(item.get("content"), list)
            for part in item["content"]
        )

    @property
    def function_call_outputs(self) -> list[dict[str, Any]]:
        """The function_call_output items of the input."""
        return [i for i in self.input_items if i.get("type") == "function_call_output"]


AVAILABILITY_TOOL = "check_availability"
#: ``check_availability {"startDate": ..., "endDate": ...}`` in a message: that exact call.
AVAILABILITY_DIRECTIVE = re.compile(re.escape(AVAILABILITY_TOOL) + r"\s*(?=\{)")
#: A message about availability ("disponible", "disponibilidad"): one call per pair of dates.
AVAILABILITY_WORDS = re.compile(r"disponib", re.I)
DATE_IN_TEXT = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b|\b(\d{1,2})/(\d{1,2})/(\d{4})\b")
PROPERTY_IN_TEXT = re.compile(r"\bpropiedad\s+(\d+)", re.I)


def availability_calls(request: ResponseRequest) -> list[dict[str, Any]]:
    """The ``check_availability`` calls the fake model makes for the customer's message.

    Only when the request offers that tool and the input has no tool outputs yet. Each
    ``check_availability {json}`` in the text is a call with exactly those arguments
    (``propertyId``/``roomId`` default to null); otherwise a message that mentions
    availability makes one call per pair of dates in it (``YYYY-MM-DD`` or ``D/M/YYYY``,
    passed on as ``YYYY-MM-DD``), for ``propiedad N`` when it names one. Several calls are
    one round, as a model's parallel calls are.
    """
    offered = any(tool.get("name") == AVAILABILITY_TOOL for tool in request.tools)
    text = request.last_user_text
    if not offered or not text or request.function_call_outputs:
        return []
    arguments: list[dict[str, Any]] = []
    decoder = json.JSONDecoder()
    for match in AVAILABILITY_DIRECTIVE.finditer(text):
        try:
            value, _end = decoder.raw_decode(text, match.end())
        except ValueError:
            continue
        if isinstance(value, dict):
            arguments.append({"propertyId": None, "roomId": None, **value})
    if not arguments and AVAILABILITY_WORDS.search(text):
        dates = [
            f"{m[1]}-{m[2]}-{m[3]}" if m[1] else f"{m[6]}-{int(m[5]):02d}-{int(m[4]):02d}"
            for m in DATE_IN_TEXT.finditer(text)
        ]
        found = PROPERTY_IN_TEXT.search(text)
        property_id = int(found[1]) if found else None
        for start, end in zip(dates[::2], dates[1::2], strict=False):
            arguments.append(
                {"startDate": start, "endDate": end, "propertyId": property_id, "roomId": None}
            )
    return [
        {
            "type": "function_call",
            "call_id": new_id("call"),
            "name": AVAILABILITY_TOOL,
            "arguments": json.dumps(args, ensure_ascii=False),
        }
        for args in arguments
    ]


def default_responder(request: ResponseRequest) -> ResponderResult:
    """Deterministic and friendly: quote what file search found, echo the user's text, or
    report tool outputs; a message about availability calls ``check_availability`` when
    offered (``availability_calls``)."""
    if request.file_search:
        return KnowledgeBase.quoting_answer(request.file_search)
    outputs = request.function_call_outputs
    if outputs:
        joined = "; ".join(str(item.get("output")) for item in outputs)
        return f"Listo, esto es lo que encontré: {joined}"
    calls = availability_calls(request)
    if calls:
        return calls
    text = request.last_user_text
    if text:
        return f"Recibido: {text}"
    if request.has_image:
        return "Recibido: [imagen]"
    return "Recibido."


@attrs.define
class Conversation:
    """A stored conversation: items in order, metadata and the in-flight lock."""

    id: str
    created_at: int
    metadata: dict[str, str]
    items: deque[dict[str, Any]]
    busy: bool = False
    in_flight: int = 0
    responses: deque[dict[str, Any]] = attrs.field(factory=lambda: deque(maxlen=1000))

    def to_json(self) -> dict[str, Any]:
        """The API's conversation object."""
        return {
            "id": self.id,
            "object": "conversation",
            "created_at": self.created_at,
            "metadata": self.metadata,
        }


@attrs.define
class ModelCall:
    """One ``responses.create`` the fake admitted or refused, with the latency it injected.

    ``who`` is the request's ``safety_identifier`` (or ``metadata.user``); times are trio's
    clock: ``started`` when the handler took the call, ``finished`` when its answer was ready.
    """

    started: float
    who: str | None
    latency: float = 0.0
    finished: float = 0.0
    status: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    #: ``requests`` or ``tokens`` when the call was refused with a 429 by the rate limits.
    refused: str | None = None

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.define
class StoredResponse:
    """A completed response, kept for ``previous_response_id`` chains and ``GET``."""

    body: dict[str, Any]
    context: list[dict[str, Any]]


def normalize_item(item: Mapping[str, Any]) -> dict[str, Any]:
    """An input item as the API stores it: typed, with an id, status and content parts."""
    kind = item.get("type", "message")
    out = dict(item)
    out["type"] = kind
    if kind == "message":
        role = item.get("role", "user")
        part_type = "output_text" if role == "assistant" else "input_text"
        content = item.get("content")
        if isinstance(content, str):
            part: dict[str, Any] = {"type": part_type, "text": content}
            if part_type == "output_text":
                part["annotations"] = []
            content = [part]
        out["content"] = content
        out.setdefault("id", new_id("msg"))
        out.setdefault("status", "completed")
    elif kind == "function_call":
        out.setdefault("id", new_id("fc"))
        out.setdefault("status", "completed")
    elif kind == "function_call_output":
        if not out.get("id"):
            out["id"] = new_id("fco")
        if not out.get("status"):
            out["status"] = "completed"
    return out


def normalize_output(item: Mapping[str, Any]) -> dict[str, Any]:
    """A responder's output item completed with ids and the fields the SDK expects."""
    out = dict(item)
    kind = out.setdefault("type", "message")
    if kind == "message":
        out.setdefault("id", new_id("msg"))
        out.setdefault("status", "completed")
        out.setdefault("role", "assistant")
        content = out.get("content", "")
        if isinstance(content, str):
            content = [{"type": "output_text", "text": content}]
        out["content"] = [
            {"annotations": [], "logprobs": [], **part}
            if part.get("type") == "output_text"
            else part
            for part in content
        ]
    elif kind == "function_call":
        out.setdefault("id", new_id("fc"))
        out.setdefault("call_id", new_id("call"))
        out.setdefault("status", "completed")
        if not isinstance(out.get("arguments"), str):
            out["arguments"] = json.dumps(out.get("arguments") or {})
    return out


def estimate_tokens(items: list[dict[str, Any]], extra: str = "") -> int:
    """A rough token count (characters / 4) of items' texts."""
    chars = len(extra)
    for item in items:
        chars += sum(len(t) for t in item_texts(item))
        if item.get("type") == "function_call_output":
            chars += len(str(item.get("output", "")))
        if item.get("type") == "function_call":
            chars += len(str(item.get("arguments", "")))
    return max(1, chars // 4)


def fake_audio(response_format: str, text: str) -> bytes:
    """Tiny deterministic audio-looking bytes with the right magic for the format."""
    payload = hashlib.sha256(text.encode()).digest() * max(1, len(text) // 32 + 1)
    if response_format == "opus":
        return b"OggS\x00\x02" + b"\x00" * 20 + b"OpusHead\x01\x01" + payload
    if response_format == "mp3":
        return b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90\x00" + payload
    if response_format == "wav":
        data = payload
        return (
            b"RIFF"
            + (36 + len(data)).to_bytes(4, "little")
            + b"WAVEfmt "
            + (16).to_bytes(4, "little")
            + b"\x01\x00\x01\x00"
            + (24000).to_bytes(4, "little")
            + (48000).to_bytes(4, "little")
            + b"\x02\x00\x10\x00"
            + b"data"
            + len(data).to_bytes(4, "little")
            + data
        )
    if response_format == "flac":
        return b"fLaC" + payload
    if response_format == "aac":
        return b"\xff\xf1\x50\x80" + payload
    return payload


class FakeOpenAI(FakeServer):
    """A loopback OpenAI API. Start it with ``await nursery.start(fake.serve)``; the started
    value (and `url`) is the base URL including ``/v1``."""

    SCHEMAS: ClassVar[tuple[str, ...]] = (
        "openai_responses_create",
        "openai_conversations_create",
        "openai_conversations_update",
        "openai_conversation_items_create",
        "openai_conversation_items_delete",
        "openai_audio_speech",
        "openai_audio_transcriptions",
        "openai_files_create",
        "openai_vector_stores_create",
        "openai_vector_store_files_create",
    )
    URL_SUFFIX: ClassVar[str] = "/v1"

    def __init__(
        self,
        api_key: str,
        *,
        faults: Faults | None = None,
        responder: Responder | None = None,
        max_calls: int = 100_000,
        max_conversations: int = 100_000,
        max_items_per_conversation: int = 1000,
        max_responses: int = 10_000,
        state_file: Path | None = None,
        latency: Lognormal | None = None,
        rate_limits: RateLimiter | None = None,
        seed: int = 0,
        max_model_calls: int | None = None,
        index_seconds: float = 0.0,
        index_fail_pattern: str | None = None,
    ) -> None:
        #: Files and vector stores (``index_seconds`` of indexing; names matching
        #: ``index_fail_pattern`` fail it). Made first: ``routes`` includes its routes.
        self.knowledge = KnowledgeBase(
            self.error_response,
            index_seconds=index_seconds,
            fail_pattern=index_fail_pattern,
            on_change=lambda: self._changed.set(),
        )
        super().__init__(api_key, faults=faults, max_calls=max_calls)
        #: Latency of ``responses.create`` (None: none); settable while serving.
        self.latency = latency
        #: The account's rate limits (None: unlimited, no headers); settable while serving.
        self.rate_limits = rate_limits
        self.rng = random.Random(seed)
        #: ``responses.create`` calls, oldest first (at most ``max_model_calls``, default
        #: ``max_calls``).
        self.model_calls: deque[ModelCall] = deque(maxlen=max_model_calls or max_calls)
        self.model_in_flight = 0
        self.model_in_flight_peak = 0
        self.api_key = api_key
        self.responder: Responder = responder or default_responder
        self.max_items_per_conversation = max_items_per_conversation
        self._conversations: BoundedDict[str, Conversation] = BoundedDict(max_conversations)
        self._responses: BoundedDict[str, StoredResponse] = BoundedDict(max_responses)
        self.transcripts: dict[str | bytes, str] = {}
        self.default_transcript = DEFAULT_TRANSCRIPT
        self.max_concurrent_per_conversation = 0
        self.responses_created = 0
        self.state_file = state_file
        self._changed = trio.Event()
        #: The Realtime websocket (``/v1/realtime``); handshake faults come from ``faults``.
        self.realtime = FakeRealtime(api_key, http_faults=self.faults)
        if state_file is not None:
            self._load_state(state_file)

    # ----------------------------------------------------------------- test helpers
    @property
    def conversations(self) -> dict[str, list[dict[str, Any]]]:
        """Conversation id -> its items, oldest first (a snapshot)."""
        return {cid: list(conv.items) for cid, conv in self._conversations.items()}

    def conversation(self, conversation_id: str) -> Conversation | None:
        """The stored conversation (items, metadata, lock state), if known."""
        return self._conversations.get(conversation_id)

    def responses_for(self, conversation_id: str) -> list[dict[str, Any]]:
        """The completed responses (API objects) created on a conversation, oldest first."""
        conv = self._conversations.get(conversation_id)
        return list(conv.responses) if conv is not None else []

    def create_conversation(
        self, items: Iterable[Mapping[str, Any]] = (), metadata: Mapping[str, str] | None = None
    ) -> str:
        """Create a conversation directly (for test setup); returns its id."""
        conv = Conversation(
            id=new_id("conv"),
            created_at=int(time.time()),
            metadata=dict(metadata or {}),
            items=deque((normalize_item(i) for i in items), maxlen=self.max_items_per_conversation),
        )
        self._conversations[conv.id] = conv
        self._changed.set()
        return conv.id

    # ----------------------------------------------------------------- persistence
    def _load_state(self, path: Path) -> None:
        try:
            saved = json.loads(path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning("sandbox: %s is unreadable (%s); starting with no conversations", path, exc)
            return
        for entry in saved.get("conversations", []):
            conv = Conversation(
                id=entry["id"],
                created_at=entry["created_at"],
                metadata=entry.get("metadata") or {},
                items=deque(entry.get("items") or (), maxlen=self.max_items_per_conversation),
            )
            self._conversations[conv.id] = conv
        self.knowledge.load_json(saved.get("knowledge") or {})

    def save_state(self) -> None:
        """Write the conversations to ``state_file`` atomically (temp file, fsync, rename)."""
        if self.state_file is None:
            return
        saved = {
            "conversations": [
                {**conv.to_json(), "items": list(conv.items)}
                for conv in self._conversations.values()
            ],
            "knowledge": self.knowledge.to_json(),
        }
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        temp = self.state_file.with_name(self.state_file.name + ".tmp")
        with open(temp, "w") as out:
            json.dump(saved, out, ensure_ascii=False)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, self.state_file)

    async def _keep_state(self) -> None:
        while True:
            await self._changed.wait()
            await trio.sleep(STATE_FLUSH_SECONDS)
            self._changed = trio.Event()
            await trio.to_thread.run_sync(self.save_state)

    async def started(self, nursery: trio.Nursery) -> None:
        """Keep the conversations in ``state_file`` while serving (when one is given)."""
        if self.state_file is not None:
            nursery.start_soon(self._keep_state)

    async def stopping(self) -> None:
        """Write the conversations one last time."""
        if self.state_file is not None:
            self.save_state()

    # ----------------------------------------------------------------- realism
    async def handle(self, request: Request) -> Response:
        """Every answer carries the account's ``x-ratelimit-*`` headers when it has limits."""
        response = await super().handle(request)
        if self.rate_limits is not None:
            response.headers.update(self.rate_limits.headers())
        return response

    def model_stats(self) -> dict[str, Any]:
        """Counts for benchmarks: calls, 429s by limit, tokens, model calls in flight."""
        limits = self.rate_limits.stats() if self.rate_limits is not None else None
        return {
            "responses_created": self.responses_created,
            "model_calls": len(self.model_calls),
            "in_flight": self.model_in_flight,
            "in_flight_peak": self.model_in_flight_peak,
            "rate_limited": sum(limits["refused"].values()) if limits else 0,
            "rate_limits": limits,
            "latency": self.latency.to_json() if self.latency is not None else None,
        }

    def _rate_limited(self, refusal: Refusal, model: str) -> Response:
        """OpenAI's 429 for a spent limit, with ``retry-after`` and ``retry-after-ms``."""
        unit = "requests per min (RPM)" if refusal.kind == "requests" else "tokens per min (TPM)"
        wait_ms = max(1, round(refusal.retry_after * 1000))
        message = (
            f"Rate limit reached for {model} in organization org-sandbox on {unit}: "
            f"Limit {int(refusal.limit)}, Used {round(refusal.used)}, Requested "
            f"{int(refusal.requested)}. Please try again in {wait_ms}ms. Visit "
            "https://platform.openai.com/account/rate-limits to learn more."
        )
        headers = {
            "retry-after": str(max(1, round(refusal.retry_after + 0.4999))),
            "retry-after-ms": str(wait_ms),
        }
        return json_response(
            429,
            {
                "error": {
                    "message": message,
                    "type": refusal.kind,
                    "param": None,
                    "code": "rate_limit_exceeded",
                }
            },
            headers,
        )

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
        """OpenAI's error shape: ``{"error": {"message", "type", "param", "code"}}``."""
        kind = ERROR_TYPES.get(status, "server_error")
        if status == 429 and code in (None, "injected_fault"):
            code = "rate_limit_exceeded"
        return json_response(
            status,
            {"error": {"message": message, "type": kind, "param": param, "code": code}},
            headers,
        )

    def validation_error(self, failure: Any) -> Response:
        """A 400 ``invalid_request_error`` naming the parameter."""
        return self.error_response(
            400, failure.message, param=failure.param, code=ERROR_CODES.get(failure.kind)
        )

    def unauthorized(self) -> Response:
        """401 like the real API."""
        return self.error_response(
            401,
            "Incorrect API key provided. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            code="invalid_api_key",
        )

    def routes(self) -> list[Route]:
        """OpenAI endpoints served by the fake."""
        return [
            route(
                "POST",
                "/v1/responses",
                self._create_response,
                schema="openai_responses_create",
                fault_aware=True,
            ),
            route("GET", "/v1/responses/{response_id}", self._get_response, body="none"),
            route(
                "POST",
                "/v1/conversations",
                self._create_conversation,
                schema="openai_conversations_create",
            ),
            route("GET", "/v1/conversations/{cid}", self._get_conversation, body="none"),
            route(
                "POST",
                "/v1/conversations/{cid}",
                self._update_conversation,
                schema="openai_conversations_update",
            ),
            route("DELETE", "/v1/conversations/{cid}", self._delete_conversation, body="none"),
            route(
                "POST",
                "/v1/conversations/{cid}/items",
                self._create_items,
                schema="openai_conversation_items_create",
            ),
            route("GET", "/v1/conversations/{cid}/items", self._list_items, body="none"),
            route(
                "DELETE",
                "/v1/conversations/{cid}/items/{item_id}",
                self._delete_item,
                body="none",
                query_schema="openai_conversation_items_delete",
            ),
            route(
                "POST",
                "/v1/audio/transcriptions",
                self._transcribe,
                schema="openai_audio_transcriptions",
                body="multipart",
            ),
            route("POST", "/v1/audio/speech", self._speech, schema="openai_audio_speech"),
            *self.knowledge.routes(),
        ]

    def _not_found(self, kind: str, ident: str, param: str | None = None) -> Response:
        return self.error_response(
            404, f"{kind} with id '{ident}' not found.", param=param, code=None
        )

    # ----------------------------------------------------------------- conversations
    async def _create_conversation(self, request: Request, fault: FaultRule | None) -> Response:
        body = request.json or {}
        cid = self.create_conversation(body.get("items") or (), body.get("metadata"))
        return json_response(200, self._conversations[cid].to_json())

    async def _get_conversation(self, request: Request, fault: FaultRule | None) -> Response:
        conv = self._conversations.get(request.params["cid"])
        if conv is None:
            return self._not_found("Conversation", request.params["cid"])
        return json_response(200, conv.to_json())

    async def _update_conversation(self, request: Request, fault: FaultRule | None) -> Response:
        conv = self._conversations.get(request.params["cid"])
        if conv is None:
            return self._not_found("Conversation", request.params["cid"])
        conv.metadata = dict(request.json.get("metadata") or {})
        self._changed.set()
        return json_response(200, conv.to_json())

    async def _delete_conversation(self, request: Request, fault: FaultRule | None) -> Response:
        cid = request.params["cid"]
        if self._conversations.pop(cid, None) is None:
            return self._not_found("Conversation", cid)
        self._changed.set()
        return json_response(200, {"id": cid, "object": "conversation.deleted", "deleted": True})

    @staticmethod
    def _item_list(items: list[dict[str, Any]], has_more: bool = False) -> dict[str, Any]:
        return {
            "object": "list",
            "data": items,
            "first_id": items[0]["id"] if items else None,
            "last_id": items[-1]["id"] if items else None,
            "has_more": has_more,
        }

    async def _create_items(self, request: Request, fault: FaultRule | None) -> Response:
        conv = self._conversations.get(request.params["cid"])
        if conv is None:
            return self._not_found("Conversation", request.params["cid"])
        created = [normalize_item(i) for i in request.json["items"]]
        conv.items.extend(created)
        self._changed.set()
        return json_response(200, self._item_list(created))

    async def _delete_item(self, request: Request, fault: FaultRule | None) -> Response:
        """``DELETE /conversations/{cid}/items/{item_id}``: the conversation object, as the API
        answers; 404 for an unknown conversation or item."""
        conv = self._conversations.get(request.params["cid"])
        if conv is None:
            return self._not_found("Conversation", request.params["cid"])
        item_id = request.params["item_id"]
        for index, item in enumerate(conv.items):
            if item.get("id") == item_id:
                del conv.items[index]
                self._changed.set()
                return json_response(200, conv.to_json())
        return self._not_found("Item", item_id)

    async def _list_items(self, request: Request, fault: FaultRule | None) -> Response:
        conv = self._conversations.get(request.params["cid"])
        if conv is None:
            return self._not_found("Conversation", request.params["cid"])
        try:
            limit = int(request.query.get("limit", "20"))
        except ValueError:
            return self.error_response(400, "Invalid 'limit': expected an integer.", param="limit")
        order = request.query.get("order", "desc")
        if not 1 <= limit <= 100:
            return self.error_response(
                400, "Invalid 'limit': must be between 1 and 100.", param="limit"
            )
        if order not in ("asc", "desc"):
            return self.error_response(
                400,
                f"Invalid value: '{order}'. Supported values are: 'asc' and 'desc'.",
                param="order",
            )
        items = list(conv.items)
        if order == "desc":
            items.reverse()
        after = request.query.get("after")
        if after:
            ids = [i["id"] for i in items]
            if after not in ids:
                return self._not_found("Item", after, param="after")
            items = items[ids.index(after) + 1 :]
        page = items[:limit]
        return json_response(200, self._item_list(page, has_more=len(items) > limit))

    # ----------------------------------------------------------------- responses
    async def _get_response(self, request: Request, fault: FaultRule | None) -> Response:
        stored = self._responses.get(request.params["response_id"])
        if stored is None:
            return self._not_found("Response", request.params["response_id"])
        return json_response(200, stored.body)

    async def _create_response(self, request: Request, fault: FaultRule | None) -> Response:
        body: dict[str, Any] = request.json
        conv_param = body.get("conversation")
        previous = body.get("previous_response_id")
        if conv_param is not None and previous is not None:
            return self.error_response(
                400,
                "Mutually exclusive parameters: Ensure you are only providing one of: "
                "'previous_response_id' or 'conversation'.",
                param="conversation",
                code="mutually_exclusive_parameters",
            )
        for unsupported in ("stream", "background"):
            if body.get(unsupported):
                return self.error_response(
                    400,
                    f"The sandbox fake does not implement '{unsupported}': true.",
                    param=unsupported,
                    code="unsupported_by_fake",
                )
        record = ModelCall(started=trio.current_time(), who=_who(body))
        self.model_calls.append(record)
        input_tokens = estimate_body_tokens(len(request.body))
        record.input_tokens = input_tokens
        if self.rate_limits is not None:
            refusal = self.rate_limits.admit(input_tokens)
            if refusal is not None:
                record.refused = refusal.kind
                record.status = 429
                record.finished = record.started
                return self._rate_limited(refusal, str(body.get("model")))
        self.model_in_flight += 1
        self.model_in_flight_peak = max(self.model_in_flight_peak, self.model_in_flight)
        try:
            response = await self._respond(request, fault, record)
        finally:
            self.model_in_flight -= 1
        record.status = response.status
        record.finished = trio.current_time()
        return response

    async def _think(self, request: Request, record: ModelCall) -> None:
        """The model's own latency: a draw from ``latency``, slept (other requests go on)."""
        if self.latency is None:
            return
        delay = self.latency.sample(self.rng)
        record.latency = delay
        if request.call is not None:
            request.call.injected_latency = delay
        await trio.sleep(delay)

    async def _respond(
        self, request: Request, fault: FaultRule | None, record: ModelCall
    ) -> Response:
        body: dict[str, Any] = request.json
        conv_param = body.get("conversation")
        previous = body.get("previous_response_id")
        prior: list[dict[str, Any]] = []
        conv: Conversation | None = None
        if conv_param is not None:
            cid = conv_param if isinstance(conv_param, str) else conv_param["id"]
            conv = self._conversations.get(cid)
            if conv is None:
                return self._not_found("Conversation", cid, param="conversation")
            prior = list(conv.items)
        elif previous is not None:
            stored = self._responses.get(previous)
            if stored is None:
                return self._not_found("Previous response", previous, param="previous_response_id")
            prior = list(stored.context)
        raw_input = body.get("input", [])
        if isinstance(raw_input, str):
            raw_input = [{"type": "message", "role": "user", "content": raw_input}]
        input_items = [normalize_item(i) for i in raw_input if i.get("type") != "item_reference"]
        problem = self._tool_pairing_problem(prior + input_items)
        if problem is not None:
            return self.error_response(400, problem, param="input")
        unknown = self.knowledge.unknown_store(list(body.get("tools") or ()))
        if unknown is not None:
            return self.error_response(
                404, f"Vector store with id '{unknown}' not found.", param="tools"
            )
        if conv is None:
            early = await self.pre_fault(fault)
            if early is not None:
                return early
            await self._think(request, record)
            real = await self._complete(body, None, prior, input_items, record)
            return await self.post_fault(fault, real)
        conv.in_flight += 1
        self.max_concurrent_per_conversation = max(
            self.max_concurrent_per_conversation, conv.in_flight
        )
        try:
            if conv.busy:
                return self.error_response(
                    400,
                    "Another response is already in progress for this conversation.",
                    param="conversation",
                    code="conversation_locked",
                )
            conv.busy = True
            try:
                early = await self.pre_fault(fault)
                if early is not None:
                    return early
                await self._think(request, record)
                real = await self._complete(body, conv, prior, input_items, record)
                return await self.post_fault(fault, real)
            finally:
                conv.busy = False
        finally:
            conv.in_flight -= 1

    @staticmethod
    def _tool_pairing_problem(items: list[dict[str, Any]]) -> str | None:
        calls = [i.get("call_id") for i in items if i.get("type") == "function_call"]
        outputs = {i.get("call_id") for i in items if i.get("type") == "function_call_output"}
        known = set(calls)
        for call_id in outputs:
            if call_id not in known:
                return f"No tool call found for function call output with call_id {call_id}."
        for call_id in calls:
            if call_id not in outputs:
                return f"No tool output found for function call {call_id}."
        return None

    async def _complete(
        self,
        body: dict[str, Any],
        conv: Conversation | None,
        prior: list[dict[str, Any]],
        input_items: list[dict[str, Any]],
        record: ModelCall,
    ) -> Response:
        request = ResponseRequest(
            body=body,
            model=body["model"],
            instructions=body.get("instructions"),
            conversation_id=conv.id if conv is not None else None,
            prior_items=prior,
            input_items=input_items,
            tools=list(body.get("tools") or ()),
        )
        request.file_search = self.knowledge.search(request.tools, request.last_user_text)
        try:
            result = self.responder(request)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:  # a broken responder is a 500, like a server bug
            return self.error_response(
                500, f"The sandbox responder failed: {type(exc).__name__}: {exc}"
            )
        raw_output = [{"type": "message", "content": result}] if isinstance(result, str) else result
        if request.file_search:
            raw_output = [self.knowledge.search_call(request.last_user_text or ""), *raw_output]
        output = [normalize_output(item) for item in raw_output]
        # What the call counts against the account: its body and its reply (usage agrees).
        input_tokens = record.input_tokens
        output_tokens = estimate_tokens(output)
        record.output_tokens = output_tokens
        if self.rate_limits is not None:
            self.rate_limits.spend(output_tokens)
        response_id = new_id("resp")
        now = int(time.time())
        response = {
            "id": response_id,
            "object": "response",
            "created_at": now,
            "completed_at": now,
            "status": "completed",
            "background": False,
            "error": None,
            "incomplete_details": None,
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "max_tool_calls": body.get("max_tool_calls"),
            "model": body["model"],
            "output": output,
            "parallel_tool_calls": body.get("parallel_tool_calls", True)
            if body.get("parallel_tool_calls") is not None
            else True,
            "previous_response_id": body.get("previous_response_id"),
            "conversation": {"id": conv.id} if conv is not None else None,
            "reasoning": {"effort": None, "summary": None},
            "safety_identifier": body.get("safety_identifier"),
            "service_tier": "default",
            "store": body.get("store") if body.get("store") is not None else True,
            "temperature": body.get("temperature") if body.get("temperature") is not None else 1.0,
            "text": {"format": {"type": "text"}, "verbosity": "medium"},
            "tool_choice": body.get("tool_choice") or "auto",
            "tools": body.get("tools") or [],
            "top_logprobs": 0,
            "top_p": body.get("top_p") if body.get("top_p") is not None else 1.0,
            "truncation": body.get("truncation") or "disabled",
            "usage": {
                "input_tokens": input_tokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": output_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": input_tokens + output_tokens,
            },
            "user": None,
            "metadata": body.get("metadata") or {},
        }
        if conv is not None:
            conv.items.extend(input_items)
            conv.items.extend(output)
            conv.responses.append(response)
            self._changed.set()
        self._responses[response_id] = StoredResponse(response, prior + input_items + output)
        self.responses_created += 1
        return json_response(200, response)

    # ----------------------------------------------------------------- audio
    async def _transcribe(self, request: Request, fault: FaultRule | None) -> Response:
        form = request.form or {}
        model = form["model"]
        response_format = form.get("response_format", "json")
        if model != "whisper-1" and response_format not in SIMPLE_TRANSCRIPTION_FORMATS:
            return self.error_response(
                400,
                f"response_format '{response_format}' is not compatible with model '{model}'. "
                "Use 'json' or 'text' instead.",
                param="response_format",
                code="unsupported_value",
            )
        data = request.files["file"].data
        digest = hashlib.sha256(data).hexdigest()
        text = self.transcripts.get(digest) or self.transcripts.get(data) or self.default_transcript
        if response_format == "text":
            return Response(200, (text + "\n").encode(), content_type="text/plain; charset=utf-8")
        if response_format in ("srt", "vtt"):
            cue = (
                "1\n00:00:00,000 --> 00:00:02,000\n"
                if response_format == "srt"
                else ("WEBVTT\n\n00:00:00.000 --> 00:00:02.000\n")
            )
            return Response(200, f"{cue}{text}\n".encode(), content_type="text/plain")
        result: dict[str, Any] = {
            "text": text,
            "usage": {"type": "duration", "seconds": max(1, len(data) // 4000)},
        }
        if response_format == "verbose_json":
            result.update(
                {
                    "task": "transcribe",
                    "language": form.get("language", "spanish"),
                    "duration": 2.0,
                    "segments": [],
                }
            )
        return json_response(200, result)

    async def _speech(self, request: Request, fault: FaultRule | None) -> Response:
        body = request.json
        if body.get("stream_format") == "sse":
            return self.error_response(
                400,
                "The sandbox fake does not implement stream_format 'sse'.",
                param="stream_format",
                code="unsupported_by_fake",
            )
        response_format = body.get("response_format", "mp3")
        audio = fake_audio(response_format, body["input"])
        return Response(200, audio, content_type=AUDIO_CONTENT_TYPES[response_format])

    # ----------------------------------------------------------------- realtime
    async def websocket(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
        send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ) -> None:
        """Every websocket goes to the fake Realtime API (which refuses other paths)."""
        await self.realtime.serve(scope, receive, send)

    def reset(self) -> None:
        """Forget faults, recorded calls and the Realtime sockets, faults and transcripts."""
        super().reset()
        self.realtime.reset()
        self.model_calls.clear()
        self.model_in_flight_peak = self.model_in_flight

    # ----------------------------------------------------------------- control API
    async def control(self, request: Request) -> Response | None:
        """Extra control endpoints: ``GET /__fake__/conversations``, ``/__fake__/realtime/…``."""
        realtime = "/__fake__/realtime/"
        if request.path.startswith(realtime):
            answer = await self.realtime.control(
                request.path[len(realtime) :], request.method, request.body
            )
            return None if answer is None else json_response(*answer)
        if request.method == "GET" and request.path.endswith("/model"):
            try:
                last = int(request.query.get("last", "1000"))
            except ValueError:
                return json_response(400, {"error": "last must be an int"})
            calls = list(self.model_calls)[-last:] if last > 0 else []
            return json_response(
                200, {"stats": self.model_stats(), "calls": [c.to_json() for c in calls]}
            )
        if request.method == "GET" and request.path.endswith("/conversations"):
            return json_response(200, {"conversations": self.conversations})
        if request.method == "POST" and request.path.endswith("/transcripts"):
            try:
                data = json.loads(request.body)
                self.transcripts[data["sha256"]] = data["text"]
            except (ValueError, KeyError, TypeError):
                return json_response(400, {"error": "body must be {sha256, text}"})
            return json_response(200, {"ok": True})
        return None


def _who(body: Mapping[str, Any]) -> str | None:
    """Whose call this is: the ``safety_identifier`` or ``metadata.user`` of the body."""
    who = body.get("safety_identifier") or (body.get("metadata") or {}).get("user")
    return str(who) if who else None
