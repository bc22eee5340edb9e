"""FakeRealtime: OpenAI's Realtime API as a loopback websocket, for text-to-speech tests.

`FakeOpenAI` serves it on its own port (hypercorn speaks ASGI websockets): a client connects
to ``ws://127.0.0.1:<port>/v1/realtime?model=<model>``, which is the OpenAI base URL with
``http`` → ``ws`` and ``/realtime`` appended, as wabot derives it. The fake checks the bearer
key at the handshake, sends ``session.created``, validates every client event against the
JSON Schemas in ``sandbox/schemas/`` (``openai_realtime_*.json``; an invalid one gets an
``error`` event, as the real server does), and answers each ``response.create`` with
deterministic audio: a sine tone whose length grows with the text (``seconds_per_char``),
streamed as base64 PCM16 (24 kHz mono) in ``response.output_audio.delta`` events of
``delta_seconds`` each, with a transcript equal to the text (unless ``transcripts`` or a fault
says otherwise), then ``response.done``.

Faults: the HTTP ``Faults`` of the fake OpenAI apply to the handshake (path ``/v1/realtime``,
method ``GET``: ``delay`` before it is answered, a ``status`` refuses it, ``drop`` holds it
unanswered until the client gives up); `RealtimeFaults` work like them (ordered rules, each
used up ``times`` times) for what happens on an open socket, at a ``stage`` (``session``:
before ``session.created``; ``response``: on ``response.create``; ``audio``: from the first
audio delta on): ``latency``, an ``error`` event, a ``drop``ped socket, a ``text_only``
answer, a different ``transcript``, an ``incomplete`` response, ``odd_audio`` (one byte: half
a PCM sample, which no encoder takes). A rule's ``text`` regex limits it to the texts it
matches. A client that goes away stops whatever the fake was doing for it.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import math
import re
import secrets
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

import attrs
import numpy as np
import trio

from sandbox.base import BoundedDict, load_validators, validate_body
from sandbox.faults import DROP_HOLD_SECONDS, Faults

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

REALTIME_PATH = "/v1/realtime"
PCM_RATE = 24000
#: The models the fake accepts (the Realtime models of the SDK's own list).
REALTIME_MODELS = frozenset(
    {
        "gpt-realtime",
        "gpt-realtime-1.5",
        "gpt-realtime-2",
        "gpt-realtime-2.1",
        "gpt-realtime-2.1-mini",
        "gpt-realtime-2025-08-28",
        "gpt-realtime-mini",
        "gpt-realtime-mini-2025-10-06",
        "gpt-realtime-mini-2025-12-15",
        "gpt-4o-realtime-preview",
        "gpt-4o-mini-realtime-preview",
    }
)
EVENT_SCHEMAS = {
    "session.update": "openai_realtime_session_update",
    "response.create": "openai_realtime_response_create",
}
ERROR_CODES = {"missing": "missing_required_parameter", "unknown": "unknown_parameter"}
EFFECTS = frozenset(
    {"latency", "error", "drop", "text_only", "transcript", "incomplete", "odd_audio"}
)
STAGES = ("session", "response", "audio")
#: Effects that make sense only for a whole response.
RESPONSE_ONLY = frozenset({"text_only", "transcript", "incomplete", "odd_audio"})
FAULT_FIELDS = frozenset({"effect", "stage", "times", "text", "delay", "error", "transcript"})
INJECTED_ERROR = {"type": "server_error", "code": "injected_fault", "message": "Injected fault"}
#: What a recorded audio delta keeps of its payload (the audio itself is not recorded).
RECORDED_DELTA = ""


def _id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


def tone(text: str, *, seconds_per_char: float, min_seconds: float = 0.3) -> bytes:
    """A deterministic PCM16 sine tone for ``text``: pitch from its hash, length from its size."""
    seconds = max(min_seconds, len(text) * seconds_per_char)
    count = int(seconds * PCM_RATE)
    pitch = 180 + int.from_bytes(hashlib.sha256(text.encode()).digest()[:2], "big") % 220
    t = np.arange(count, dtype=np.float64) / PCM_RATE
    wave = 0.3 * np.sin(2 * math.pi * pitch * t)
    fade = min(count // 2, PCM_RATE // 100)
    if fade:
        ramp = np.linspace(0.0, 1.0, fade)
        wave[:fade] *= ramp
        wave[-fade:] *= ramp[::-1]
    return (wave * 32767).astype("<i2").tobytes()


@attrs.define
class RealtimeFault:
    """One injected fault on an open Realtime socket; see the module docstring."""

    effect: str
    stage: str = "response"
    times: float = 1
    text: str | None = None
    delay: float = 0.0
    error: dict[str, Any] | None = None
    transcript: str | None = None
    used: int = 0
    pattern: re.Pattern[str] | None = attrs.field(init=False, repr=False, default=None)

    def __attrs_post_init__(self) -> None:
        if self.effect not in EFFECTS:
            raise ValueError(f"effect must be one of {sorted(EFFECTS)}, got {self.effect!r}")
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {self.stage!r}")
        if self.effect in RESPONSE_ONLY and self.stage != "response":
            raise ValueError(f"effect {self.effect!r} applies at stage 'response' only")
        if self.text is not None and self.stage == "session":
            raise ValueError("a session-stage fault cannot match a text (none is known yet)")
        if self.times <= 0 or self.delay < 0:
            raise ValueError("times must be positive and delay >= 0")
        self.pattern = re.compile(self.text) if self.text is not None else None

    def matches(self, stage: str, text: str | None) -> bool:
        if stage != self.stage:
            return False
        return self.pattern is None or (text is not None and bool(self.pattern.search(text)))

    def to_json(self) -> dict[str, Any]:
        out = attrs.asdict(self, filter=lambda a, _v: a.name != "pattern")
        out["times"] = "inf" if math.isinf(self.times) else self.times
        return out


@attrs.define
class RealtimeFaults:
    """The ordered Realtime fault rules of one fake (first match wins, used up ``times``)."""

    _rules: list[RealtimeFault] = attrs.field(factory=list)

    def add(
        self,
        effect: str,
        *,
        stage: str = "response",
        times: float = 1,
        text: str | None = None,
        delay: float = 0.0,
        error: dict[str, Any] | None = None,
        transcript: str | None = None,
    ) -> RealtimeFault:
        """Add a rule; see the module docstring for the effects and stages."""
        rule = RealtimeFault(effect, stage, times, text, delay, error, transcript)
        self._rules.append(rule)
        return rule

    def add_from_json(self, spec: Mapping[str, Any]) -> RealtimeFault:
        """`add` from a JSON body (the control API); ``times`` may be ``"inf"`` or null."""
        unknown = set(spec) - FAULT_FIELDS
        if unknown:
            raise ValueError(f"unknown realtime fault fields: {sorted(unknown)}")
        kwargs = dict(spec)
        if kwargs.get("times", 1) in (None, "inf"):
            kwargs["times"] = math.inf
        return self.add(kwargs.pop("effect"), **kwargs)

    def clear(self) -> None:
        self._rules.clear()

    @property
    def rules(self) -> tuple[RealtimeFault, ...]:
        return tuple(self._rules)

    def take(self, stage: str, text: str | None = None) -> RealtimeFault | None:
        """Use up and return the first live rule for this stage (and text), if any."""
        for index, rule in enumerate(self._rules):
            if rule.matches(stage, text):
                rule.used += 1
                if rule.used >= rule.times:
                    del self._rules[index]
                return rule
        return None


@attrs.define
class Reading:
    """One ``response.create`` the fake answered: the text, what it said, how it ended."""

    text: str
    transcript: str
    audio_bytes: int
    status: str


@attrs.define
class RealtimeSession:
    """One websocket as recorded: handshake, client events, server events, readings."""

    id: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    status: int = 101
    opened_at: float = 0.0
    closed_at: float | None = None
    #: Client events in arrival order (as parsed JSON).
    events: list[Any] = attrs.field(factory=list)
    #: Why client events were rejected (schema or protocol).
    invalid: list[str] = attrs.field(factory=list)
    #: Server events sent, audio payloads blanked (see ``RECORDED_DELTA``).
    sent: list[dict[str, Any]] = attrs.field(factory=list)
    readings: list[Reading] = attrs.field(factory=list)
    voice: Any = "alloy"
    speed: float = 1.0

    @property
    def model(self) -> str | None:
        return self.query.get("model")

    @property
    def closed(self) -> bool:
        return self.closed_at is not None

    def sent_types(self) -> Counter[str]:
        return Counter(event["type"] for event in self.sent)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "model": self.model,
            "status": self.status,
            "closed": self.closed,
            "events": self.events,
            "invalid": self.invalid,
            "sent_types": dict(self.sent_types()),
            "readings": [attrs.asdict(r) for r in self.readings],
        }


class _Closed(Exception):
    """The fake closed (or dropped) the socket: stop serving it."""


class FakeRealtime:
    """The Realtime websocket of `FakeOpenAI` (``fake.realtime``); see the module docstring."""

    SCHEMAS = tuple(EVENT_SCHEMAS.values())

    def __init__(
        self,
        api_key: str,
        *,
        http_faults: Faults,
        max_sessions: int = 1000,
        max_sent_per_session: int = 5000,
    ) -> None:
        self.api_key = api_key
        self.http_faults = http_faults
        self.faults = RealtimeFaults()
        #: Text to read → the transcript the fake reports instead of the text itself.
        self.transcripts: dict[str, str] = {}
        self.seconds_per_char = 0.06
        self.delta_seconds = 0.1
        self.max_sent_per_session = max_sent_per_session
        self.open_sockets = 0
        self.max_open_sockets = 0
        self._sessions: deque[RealtimeSession] = deque(maxlen=max_sessions)
        self._validators = load_validators(self.SCHEMAS)
        self._tones: BoundedDict[tuple[str, float], bytes] = BoundedDict(64)

    # ----------------------------------------------------------------- test helpers
    @property
    def sessions(self) -> list[RealtimeSession]:
        """Recorded sockets, oldest first."""
        return list(self._sessions)

    @property
    def invalid_events(self) -> list[str]:
        """Every rejected client event of every recorded socket."""
        return [problem for session in self._sessions for problem in session.invalid]

    def reset(self) -> None:
        self.faults.clear()
        self.transcripts.clear()
        self._sessions.clear()

    async def control(self, name: str, method: str, body: bytes) -> tuple[int, Any] | None:
        """``/__fake__/realtime/...``: sessions (GET), faults (GET, POST), transcripts (POST)."""
        if method == "GET" and name == "sessions":
            return 200, {"sessions": [s.to_json() for s in self._sessions]}
        if method == "GET" and name == "faults":
            return 200, {"faults": [rule.to_json() for rule in self.faults.rules]}
        if method == "POST" and name == "faults":
            try:
                rule = self.faults.add_from_json(json.loads(body or b"{}"))
            except (ValueError, TypeError, KeyError, re.error) as exc:
                return 400, {"error": str(exc)}
            return 200, {"ok": True, "rule": rule.to_json()}
        if method == "POST" and name == "transcripts":
            try:
                data = json.loads(body)
                self.transcripts[data["text"]] = data["transcript"]
            except (ValueError, KeyError, TypeError):
                return 400, {"error": "body must be {text, transcript}"}
            return 200, {"ok": True}
        return None

    # ----------------------------------------------------------------- the socket
    async def serve(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        """One ASGI websocket connection, from ``websocket.connect`` to its close."""
        headers = {
            name.decode("latin-1").lower(): value.decode("latin-1")
            for name, value in scope["headers"]
        }
        session = RealtimeSession(
            id=_id("sess"),
            path=scope["path"],
            query=dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"))),
            headers=headers,
            opened_at=trio.current_time(),
        )
        self._sessions.append(session)
        try:
            if (await receive())["type"] != "websocket.connect":
                return
            if not await self._handshake(session, receive, send):
                return
            self.open_sockets += 1
            self.max_open_sockets = max(self.max_open_sockets, self.open_sockets)
            try:
                await self._serve_open(session, receive, send)
            finally:
                self.open_sockets -= 1
        finally:
            session.closed_at = trio.current_time()

    async def _serve_open(self, session: RealtimeSession, receive: Receive, send: Send) -> None:
        """Answer the client's events until either side closes.

        A reader task takes every ASGI message; a client that goes away cancels whatever the
        fake was doing for it (streaming, an injected delay), as a real server stops sending.
        """
        inbox_in, inbox = trio.open_memory_channel[MutableMapping[str, Any]](64)
        async with trio.open_nursery() as nursery:

            async def read() -> None:
                async with inbox_in:
                    while True:
                        message = await receive()
                        if message["type"] == "websocket.disconnect":
                            nursery.cancel_scope.cancel()
                            return
                        await inbox_in.send(message)

            nursery.start_soon(read)
            with contextlib.suppress(_Closed, trio.EndOfChannel):
                await self._converse(session, inbox.receive, send)
            nursery.cancel_scope.cancel()

    async def _handshake(self, session: RealtimeSession, receive: Receive, send: Send) -> bool:
        if session.path != REALTIME_PATH:
            return await self._refuse(session, send, 404, f"Unknown path {session.path}", None)
        if session.headers.get("authorization", "") != f"Bearer {self.api_key}":
            return await self._refuse(
                session, send, 401, "Incorrect API key provided.", "invalid_api_key"
            )
        fault = self.http_faults.take("GET", session.path)
        if fault is not None:
            if fault.delay:
                await trio.sleep(fault.delay)
            if fault.drop:  # no answer at all: held until the client gives up
                session.status = 0
                with trio.move_on_after(DROP_HOLD_SECONDS):
                    while (await receive())["type"] != "websocket.disconnect":
                        pass
                return False
            if fault.status != 200:
                return await self._refuse(
                    session, send, fault.status, f"Injected fault: HTTP {fault.status}", None
                )
        await send({"type": "websocket.accept"})
        return True

    async def _refuse(
        self, session: RealtimeSession, send: Send, status: int, message: str, code: str | None
    ) -> bool:
        session.status = status
        body = {"error": {"message": message, "type": "invalid_request_error", "code": code}}
        await send(
            {
                "type": "websocket.http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "websocket.http.response.body", "body": json.dumps(body).encode()})
        return False

    async def _converse(self, session: RealtimeSession, receive: Receive, send: Send) -> None:
        async def emit(event: dict[str, Any]) -> None:
            event = {"event_id": _id("event"), **event}
            if len(session.sent) < self.max_sent_per_session:
                recorded = event
                if event["type"] == "response.output_audio.delta":
                    recorded = {**event, "delta": RECORDED_DELTA}
                session.sent.append(recorded)
            await send({"type": "websocket.send", "text": json.dumps(event, ensure_ascii=False)})

        if session.model not in REALTIME_MODELS:
            await emit(
                self._error(
                    "invalid_request_error",
                    f"The model '{session.model}' does not exist or you do not have access to it.",
                    code="model_not_found",
                    param="model",
                )
            )
            await self._close(send, 1008)
        fault = self.faults.take("session")
        if fault is not None:
            await self._apply_simple(fault, emit, send)
        await emit({"type": "session.created", "session": self._session_object(session)})
        while True:
            message = await receive()
            if message["type"] != "websocket.receive":
                continue
            event = self._parse(session, message)
            if event is None:
                await emit(self._error("invalid_request_error", session.invalid[-1]))
                continue
            problem = self._validate(event)
            if problem is not None:
                session.invalid.append(problem[0])
                await emit(
                    self._error(
                        "invalid_request_error",
                        problem[0],
                        code=problem[1],
                        param=problem[2],
                        event_id=event.get("event_id"),
                    )
                )
                continue
            if event["type"] == "session.update":
                output = event["session"].get("audio", {}).get("output", {})
                session.voice = output.get("voice", session.voice)
                session.speed = output.get("speed", session.speed)
                await emit({"type": "session.updated", "session": self._session_object(session)})
            elif event["type"] == "response.create":
                await self._respond(session, event.get("response") or {}, emit, send)

    def _parse(self, session: RealtimeSession, message: Mapping[str, Any]) -> Any:
        raw = message.get("text")
        if raw is None:
            session.invalid.append("binary frames are not Realtime events")
            return None
        try:
            event = json.loads(raw)
        except ValueError as exc:
            session.invalid.append(f"We could not parse the JSON body of your request: {exc}")
            return None
        session.events.append(event)
        if not isinstance(event, dict):
            session.invalid.append("an event must be a JSON object")
            return None
        return event

    def _validate(self, event: dict[str, Any]) -> tuple[str, str | None, str | None] | None:
        """(message, code, param) of an invalid or unsupported client event, else None."""
        schema = EVENT_SCHEMAS.get(event.get("type"))  # type: ignore[arg-type]
        if schema is None:
            return (
                f"The sandbox fake does not implement client event {event.get('type')!r}.",
                "unsupported_by_fake",
                "type",
            )
        failure = validate_body(self._validators[schema], event)
        if failure is not None:
            return failure.message, ERROR_CODES.get(failure.kind, "invalid_value"), failure.param
        if event["type"] == "response.create":
            response = event.get("response") or {}
            if response.get("conversation") != "none" or not response.get("input"):
                return (
                    "The sandbox fake answers out-of-band responses only: conversation 'none' "
                    "with an input.",
                    "unsupported_by_fake",
                    "response.conversation",
                )
        return None

    async def _apply_simple(
        self, fault: Any, emit: Callable[[dict[str, Any]], Awaitable[None]], send: Send
    ) -> bool:
        """Latency, an error event or a drop; True when the fault replaced what follows."""
        if fault.delay:
            await trio.sleep(fault.delay)
        if fault.effect == "drop":
            await self._close(send, 1011)
        if fault.effect == "error":
            await emit({"type": "error", "error": {**INJECTED_ERROR, **(fault.error or {})}})
            return True
        return False

    async def _respond(
        self,
        session: RealtimeSession,
        request: dict[str, Any],
        emit: Callable[[dict[str, Any]], Awaitable[None]],
        send: Send,
    ) -> None:
        text = "\n".join(
            part["text"]
            for item in request["input"]
            if item.get("type") == "message" and item.get("role") == "user"
            for part in item["content"]
            if part.get("type") == "input_text"
        )
        fault = self.faults.take("response", text)
        if fault is not None and await self._apply_simple(fault, emit, send):
            return
        modalities = request.get("output_modalities", ["audio"])
        text_only = modalities == ["text"] or (fault is not None and fault.effect == "text_only")
        transcript = self.transcripts.get(text, text)
        if fault is not None and fault.effect == "transcript":
            transcript = fault.transcript or ""
        response_id, item_id = _id("resp"), _id("item")
        base = {"response_id": response_id, "item_id": item_id, "output_index": 0}
        await emit(
            {"type": "response.created", "response": self._response(response_id, [], "in_progress")}
        )
        item: dict[str, Any] = {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "role": "assistant",
            "status": "in_progress",
            "content": [],
        }
        await emit(
            {
                "type": "response.output_item.added",
                "response_id": response_id,
                "output_index": 0,
                "item": item,
            }
        )
        if text_only:
            part = {"type": "output_text", "text": transcript}
            where = {**base, "content_index": 0}
            await emit({"type": "response.output_text.delta", **where, "delta": transcript})
            await emit({"type": "response.output_text.done", **where, "text": transcript})
            audio_bytes, status = 0, "completed"
        else:
            part = {"type": "output_audio", "transcript": transcript}
            audio_bytes, status = await self._stream_audio(
                text, transcript, base, fault, emit, send
            )
            if status is None:
                return
        item = {**item, "status": "completed" if status == "completed" else "incomplete"}
        item["content"] = [part]
        await emit(
            {
                "type": "response.output_item.done",
                "response_id": response_id,
                "output_index": 0,
                "item": item,
            }
        )
        done = self._response(response_id, [item], status, text_only=text_only)
        await emit({"type": "response.done", "response": done})
        session.readings.append(Reading(text, transcript, audio_bytes, status))

    async def _stream_audio(
        self,
        text: str,
        transcript: str,
        base: dict[str, Any],
        fault: RealtimeFault | None,
        emit: Callable[[dict[str, Any]], Awaitable[None]],
        send: Send,
    ) -> tuple[int, str | None]:
        """Stream the tone and transcript; (audio bytes, status), status None if cut short."""
        odd = fault is not None and fault.effect == "odd_audio"
        pcm = b"\x00" if odd else self._tone(text)
        part = {**base, "content_index": 0}
        empty_part = {"type": "audio", "transcript": ""}
        await emit({"type": "response.content_part.added", **part, "part": empty_part})
        step = max(2, int(PCM_RATE * self.delta_seconds) * 2)
        words = re.findall(r"\S+\s*", transcript)
        per_delta = max(1, math.ceil(len(words) / max(1, math.ceil(len(pcm) / step))))
        incomplete = fault is not None and fault.effect == "incomplete"
        limit = len(pcm) // 2 if incomplete else len(pcm)
        audio_fault = self.faults.take("audio", text)
        sent = 0
        for offset in range(0, limit, step):
            if audio_fault is not None and audio_fault.effect == "latency" and audio_fault.delay:
                await trio.sleep(audio_fault.delay)
            chunk = pcm[offset : min(offset + step, limit)]
            delta = base64.b64encode(chunk).decode("ascii")
            await emit({"type": "response.output_audio.delta", **part, "delta": delta})
            sent += len(chunk)
            if words:
                said, words = "".join(words[:per_delta]), words[per_delta:]
                await emit(
                    {"type": "response.output_audio_transcript.delta", **part, "delta": said}
                )
            if audio_fault is not None and audio_fault.effect != "latency":
                await self._apply_simple(audio_fault, emit, send)
                return sent, None
        if words:
            rest = "".join(words)
            await emit({"type": "response.output_audio_transcript.delta", **part, "delta": rest})
        await emit({"type": "response.output_audio.done", **part})
        await emit(
            {"type": "response.output_audio_transcript.done", **part, "transcript": transcript}
        )
        done_part = {"type": "audio", "transcript": transcript}
        await emit({"type": "response.content_part.done", **part, "part": done_part})
        return sent, "incomplete" if incomplete else "completed"

    def _tone(self, text: str) -> bytes:
        key = (text, self.seconds_per_char)
        pcm = self._tones.get(key)
        if pcm is None:
            pcm = tone(text, seconds_per_char=self.seconds_per_char)
            self._tones[key] = pcm
        return pcm

    async def _close(self, send: Send, code: int) -> None:
        await send({"type": "websocket.close", "code": code})
        raise _Closed

    # ----------------------------------------------------------------- server event shapes
    @staticmethod
    def _error(
        kind: str,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        event_id: str | None = None,
    ) -> dict[str, Any]:
        return {
            "type": "error",
            "error": {
                "type": kind,
                "code": code,
                "message": message,
                "param": param,
                "event_id": event_id,
            },
        }

    @staticmethod
    def _session_object(session: RealtimeSession) -> dict[str, Any]:
        return {
            "type": "realtime",
            "object": "realtime.session",
            "id": session.id,
            "model": session.model,
            "output_modalities": ["audio"],
            "instructions": "You are a helpful assistant.",
            "tools": [],
            "tool_choice": "auto",
            "max_output_tokens": "inf",
            "tracing": None,
            "truncation": "auto",
            "prompt": None,
            "expires_at": int(time.time()) + 3600,
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": PCM_RATE},
                    "transcription": None,
                    "noise_reduction": None,
                    "turn_detection": {
                        "type": "server_vad",
                        "threshold": 0.5,
                        "prefix_padding_ms": 300,
                        "silence_duration_ms": 200,
                        "idle_timeout_ms": None,
                        "create_response": True,
                        "interrupt_response": True,
                    },
                },
                "output": {
                    "format": {"type": "audio/pcm", "rate": PCM_RATE},
                    "voice": session.voice,
                    "speed": session.speed,
                },
            },
            "include": None,
        }

    @staticmethod
    def _response(
        response_id: str, output: list[dict[str, Any]], status: str, *, text_only: bool = False
    ) -> dict[str, Any]:
        details: dict[str, Any] | None = None
        if status == "incomplete":
            details = {"type": "incomplete", "reason": "max_output_tokens"}
        spoken = sum(
            len(p.get("transcript") or p.get("text") or "") for o in output for p in o["content"]
        )
        return {
            "object": "realtime.response",
            "id": response_id,
            "status": status,
            "status_details": details,
            "output": output,
            "conversation_id": None,
            "output_modalities": ["text"] if text_only else ["audio"],
            "max_output_tokens": "inf",
            "audio": {"output": {"format": {"type": "audio/pcm", "rate": PCM_RATE}}},
            "usage": {
                "total_tokens": 0 if status == "in_progress" else 20 + spoken // 2,
                "input_tokens": 0 if status == "in_progress" else 20,
                "output_tokens": 0 if status == "in_progress" else spoken // 2,
            },
            "metadata": None,
        }
