"""Speech through OpenAI's Realtime API: text in, an OGG/Opus voice note out.

``RealtimeSynthesizer`` is a ``Synthesizer`` (``actors.voice.audio``) that replaces
``/v1/audio/speech``, whose models OpenAI shuts down on 2027-01-06. One synthesis is one
websocket (``trio-websocket``: the SDK's own Realtime client runs on asyncio), at most
``WABOT_SPEECH_MAX_SOCKETS`` open at once, every step under a deadline, the socket closed on
every path (``async with``; a cancelled close still closes the TCP stream):

1. connect to ``wss://<OpenAI base URL>/realtime?model=<model>`` (``ws://`` for an ``http://``
   base URL: the sandbox) with ``Authorization: Bearer <key>``, and wait for
   ``session.created``;
2. ``session.update``: audio out only, PCM 24 kHz, the voice and its speed;
3. per chunk of whole sentences (``speech_chunks``: one Realtime response carries at most 4096
   output tokens), ``response.create`` out of band (``conversation: "none"``) with
   instructions to read the text word for word, then collect ``response.output_audio.delta``
   (base64 PCM) and the transcript until ``response.done``;
4. check every chunk's transcript against its text (``actors.voice.faithful``), then encode the PCM
   to OGG/Opus in a worker thread (``actors.voice.voicenote``).

Any failure raises ``SpeechFailed`` with a ``reason`` (``empty``, ``connect``, ``timeout``,
``dropped``, ``error_event``, ``incomplete``, ``text_only``, ``unfaithful``, ``protocol``,
``encoding``, ``too_long``, ``too_big``), logged and counted in
``wabot_voice_fallbacks_total{reason}``; the turn then sends the reply as text, once
(``TurnRunner.send_voice`` returns False).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import re
import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import trio
import trio_websocket

from actors.runtime.telemetry import Telemetry
from actors.voice import faithful
from actors.voice.audio import AudioError
from actors.voice.voicenote import VoiceNote, VoiceNoteError, encode_voice_note

log = logging.getLogger("actors.voice.realtime")

DEFAULT_BASE_URL = "https://api.openai.com/v1"
#: The Realtime API's only PCM rate, which Opus also encodes natively.
PCM_RATE = 24000
#: Silence between two chunks of a long reply, as between two sentences.
CHUNK_PAUSE_SECONDS = 0.25
#: The largest websocket message accepted (an audio delta is a few tens of KiB).
MAX_MESSAGE_BYTES = 8 * 2**20
READ_ALOUD = (
    "You are a text-to-speech reader, not an assistant. Read the user's message aloud exactly "
    "as it is written, word for word, in the language it is written in, with a warm and "
    "natural voice. Do not answer it, comment on it, translate it, summarise it, or add, omit "
    "or change any word; say every number, name and price exactly as written."
)
REASONS = (
    "empty",
    "connect",
    "timeout",
    "dropped",
    "error_event",
    "incomplete",
    "text_only",
    "unfaithful",
    "protocol",
    "encoding",
    "too_long",
    "too_big",
)
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|\n+")
_CLAUSE_END = re.compile(r"(?<=[,;:])\s+")
_FORMATTING = re.compile(r"[*_~`]+")
_BULLET = re.compile(r"^\s*(?:[-•·]|\d+[.)])\s+", re.MULTILINE)


class SpeechFailed(AudioError):
    """A synthesis that must fall back to text; ``reason`` labels the metric."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def realtime_url(base_url: str | None, model: str) -> str:
    """The Realtime websocket URL under an OpenAI base URL (http → ws, https → wss)."""
    parts = urlsplit((base_url or DEFAULT_BASE_URL).rstrip("/"))
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    if scheme is None or not parts.netloc:
        raise ValueError(f"not an http(s) base URL: {base_url!r}")
    query = f"model={quote(model, safe='')}"
    return urlunsplit((scheme, parts.netloc, f"{parts.path}/realtime", query, ""))


def spoken_text(text: str) -> str:
    """``text`` as it is read: without WhatsApp formatting marks and list bullets."""
    return _FORMATTING.sub("", _BULLET.sub("", text)).strip()


def speech_chunks(text: str, max_chars: int) -> list[str]:
    """Whole sentences grouped into chunks of at most ``max_chars`` (longer ones split)."""
    pieces: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        pieces.extend(_split_long(sentence.strip(), max_chars))
    chunks: list[str] = []
    current = ""
    for piece in pieces:
        if not piece:
            continue
        if current and len(current) + 1 + len(piece) > max_chars:
            chunks.append(current)
            current = piece
        else:
            current = f"{current} {piece}" if current else piece
    if current:
        chunks.append(current)
    return chunks


def _split_long(sentence: str, max_chars: int) -> Iterator[str]:
    if len(sentence) <= max_chars:
        yield sentence
        return
    for clause in _CLAUSE_END.split(sentence):
        while len(clause) > max_chars:
            cut = clause.rfind(" ", 0, max_chars + 1)
            cut = cut if cut > 0 else max_chars
            yield clause[:cut].strip()
            clause = clause[cut:].strip()
        yield clause


class RealtimeSynthesizer:
    """Text to an OGG/Opus voice note through the Realtime API, one websocket per synthesis."""

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str | None,
        model: str,
        voice: str,
        speed: float = 1.0,
        timeout: float = 30.0,
        connect_timeout: float = 10.0,
        event_timeout: float = 10.0,
        max_sockets: int = 16,
        chunk_chars: int = 400,
        max_output_tokens: int = 4096,
        max_distance: float = 0.15,
        encode_threads: int = 2,
        max_seconds: float = 300.0,
        max_bytes: int = 16 * 2**20,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.url = realtime_url(base_url, model)
        self._headers = [(b"authorization", f"Bearer {api_key}".encode())]
        self.model = model
        self.voice = voice
        self.speed = speed
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.event_timeout = event_timeout
        self.chunk_chars = chunk_chars
        self.max_output_tokens = max_output_tokens
        self.max_distance = max_distance
        self.max_seconds = max_seconds
        self.max_bytes = max_bytes
        self._max_pcm_bytes = int(max_seconds * PCM_RATE) * 2
        self.telemetry = telemetry
        self._sockets = trio.CapacityLimiter(max_sockets)
        self._encoders = trio.CapacityLimiter(encode_threads)
        #: One TLS context for every socket (building one loads the CA store).
        self._ssl = ssl.create_default_context() if self.url.startswith("wss:") else None
        if telemetry is not None:
            for reason in REASONS:
                telemetry.voice_fallbacks.labels(reason)

    async def aclose(self) -> None:
        """Nothing stays open between syntheses."""

    async def synthesize(self, text: str) -> bytes:
        """OGG/Opus of ``text``; ``SpeechFailed`` (logged, counted) when it must go as text."""
        started = trio.current_time()
        try:
            with trio.fail_after(self.timeout):
                chunks = speech_chunks(spoken_text(text), self.chunk_chars)
                if not chunks:
                    raise SpeechFailed("empty", "the reply has no words to say")
                async with self._sockets:
                    pcm = await self._speak(chunks)
                note = await trio.to_thread.run_sync(
                    self._encode, pcm, limiter=self._encoders, abandon_on_cancel=True
                )
        except SpeechFailed as exc:
            self._failed(exc)
            raise
        except trio.TooSlowError as exc:
            failure = SpeechFailed("timeout", f"no voice note within {self.timeout:g} s")
            self._failed(failure)
            raise failure from exc
        except (KeyError, TypeError, ValueError) as exc:
            failure = SpeechFailed("protocol", f"unexpected event from the server: {exc!r}")
            self._failed(failure)
            raise failure from exc
        if self.telemetry is not None:
            self.telemetry.speech_seconds.observe(trio.current_time() - started)
        log.debug("spoke %d chunks, %.1f s of audio", len(chunks), note.seconds)
        return note.ogg

    def _encode(self, pcm: bytearray) -> VoiceNote:
        try:
            return encode_voice_note(
                pcm, rate=PCM_RATE, max_seconds=self.max_seconds, max_bytes=self.max_bytes
            )
        except VoiceNoteError as exc:
            raise SpeechFailed(exc.reason, exc.detail) from exc

    def _failed(self, failure: SpeechFailed) -> None:
        if self.telemetry is not None:
            self.telemetry.voice_fallbacks.labels(failure.reason).inc()
        log.warning("voice reply not synthesized (%s): %s", failure.reason, failure.detail)

    # -- the websocket -------------------------------------------------------------------------

    async def _speak(self, chunks: list[str]) -> bytearray:
        """The PCM of every chunk, in order, on one websocket (one buffer, never copied)."""
        async with self._connection() as ws:
            first = await self._receive(ws)
            if first.get("type") != "session.created":
                raise SpeechFailed("protocol", f"expected session.created, got {first['type']}")
            await self._send(ws, self._session_update())
            pcm = bytearray()
            pause = bytes(int(PCM_RATE * CHUNK_PAUSE_SECONDS) * 2)
            for index, chunk in enumerate(chunks):
                if index:
                    pcm += pause
                transcript = await self._respond(ws, chunk, pcm)
                verdict = faithful.check(chunk, transcript, max_distance=self.max_distance)
                if not verdict.faithful:
                    raise SpeechFailed(
                        "unfaithful",
                        f"{verdict.describe()}; said {transcript[:200]!r} for {chunk[:200]!r}",
                    )
            return pcm

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[trio_websocket.WebSocketConnection]:
        """The open websocket; its failures as ``SpeechFailed``; closed on the way out.

        The handshake runs under a cancel scope of ours: trio-websocket's own connect timeout
        raises, but leaves its reader task waiting for the server, which holds the context
        manager open until the server answers.
        """
        failure: SpeechFailed | None = None
        done = False
        with trio.CancelScope(deadline=trio.current_time() + self.connect_timeout) as handshake:
            try:
                async with trio_websocket.open_websocket_url(
                    self.url,
                    self._ssl,
                    extra_headers=self._headers,
                    max_message_size=MAX_MESSAGE_BYTES,
                    connect_timeout=self.connect_timeout,
                    disconnect_timeout=self.connect_timeout,
                ) as ws:
                    handshake.deadline = math.inf
                    try:
                        yield ws
                        done = True
                    except SpeechFailed as exc:
                        failure = exc
                        raise
                    except trio_websocket.ConnectionClosed as exc:
                        failure = SpeechFailed("dropped", f"the server closed the socket: {exc}")
                        raise failure from exc
            except trio_websocket.DisconnectionTimeout as exc:
                # The closing handshake timed out (the stream is closed all the same).
                if failure is not None:
                    raise failure from None
                if not done:
                    raise SpeechFailed("dropped", "the socket stopped answering") from exc
                log.info("realtime socket: closing handshake timed out after a full synthesis")
            except trio_websocket.ConnectionRejected as exc:
                raise SpeechFailed("connect", f"handshake refused: HTTP {exc.status_code}") from exc
            except (trio_websocket.HandshakeError, OSError) as exc:
                raise SpeechFailed("connect", f"cannot open {self._where}: {exc!r}") from exc
        if handshake.cancelled_caught:
            raise SpeechFailed("connect", f"no handshake within {self.connect_timeout:g} s")

    @property
    def _where(self) -> str:
        return self.url.split("?", 1)[0]

    async def _send(self, ws: trio_websocket.WebSocketConnection, event: dict[str, Any]) -> None:
        try:
            with trio.fail_after(self.event_timeout):
                await ws.send_message(json.dumps(event, ensure_ascii=False))
        except trio.TooSlowError:
            raise SpeechFailed("timeout", f"could not send for {self.event_timeout:g} s") from None

    async def _receive(self, ws: trio_websocket.WebSocketConnection) -> dict[str, Any]:
        """The next server event (an ``error`` event raises)."""
        try:
            with trio.fail_after(self.event_timeout):
                message = await ws.get_message()
        except trio.TooSlowError:
            raise SpeechFailed("timeout", f"no event for {self.event_timeout:g} s") from None
        try:
            event = json.loads(message)
        except ValueError as exc:
            raise SpeechFailed("protocol", "a server message is not JSON") from exc
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            raise SpeechFailed("protocol", f"not a Realtime event: {str(message)[:200]!r}")
        if event["type"] == "error":
            error = event.get("error") or {}
            raise SpeechFailed(
                "error_event",
                f"{error.get('type')}/{error.get('code')}: {str(error.get('message'))[:300]}",
            )
        return event

    def _session_update(self) -> dict[str, Any]:
        return {
            "type": "session.update",
            "session": {
                "type": "realtime",
                "output_modalities": ["audio"],
                "audio": {
                    "output": {
                        "format": {"type": "audio/pcm", "rate": PCM_RATE},
                        "voice": self._voice(),
                        "speed": self.speed,
                    }
                },
            },
        }

    def _voice(self) -> str | dict[str, str]:
        """A built-in voice by name; a custom one (``voice_…``) by id."""
        return {"id": self.voice} if self.voice.startswith("voice_") else self.voice

    def _response_create(self, text: str) -> dict[str, Any]:
        return {
            "type": "response.create",
            "response": {
                "conversation": "none",
                "output_modalities": ["audio"],
                "instructions": READ_ALOUD,
                "max_output_tokens": self.max_output_tokens,
                "input": [
                    {
                        "type": "message",
                        "role": "user",
                        "content": [{"type": "input_text", "text": text}],
                    }
                ],
            },
        }

    async def _respond(
        self, ws: trio_websocket.WebSocketConnection, text: str, pcm: bytearray
    ) -> str:
        """One out-of-band response reading ``text``: its PCM onto ``pcm``; its transcript."""
        await self._send(ws, self._response_create(text))
        start = len(pcm)
        deltas: list[str] = []
        transcript: str | None = None
        wrote_text = False
        while True:
            event = await self._receive(ws)
            kind = event["type"]
            if kind == "response.output_audio.delta":
                try:
                    pcm += base64.b64decode(event["delta"], validate=True)
                except binascii.Error as exc:
                    raise SpeechFailed("protocol", "an audio delta is not base64") from exc
                if len(pcm) > self._max_pcm_bytes:  # stop receiving what cannot be sent
                    raise SpeechFailed(
                        "too_long", f"over {self.max_seconds:g} s of speech; not a voice note"
                    )
            elif kind == "response.output_audio_transcript.delta":
                deltas.append(event["delta"])
            elif kind == "response.output_audio_transcript.done":
                transcript = event["transcript"]
            elif kind in ("response.output_text.delta", "response.output_text.done"):
                wrote_text = True
            elif kind == "response.done":
                self._check_done(event["response"])
                break
        if len(pcm) == start:
            what = "a text answer" if wrote_text else "no audio"
            raise SpeechFailed("text_only", f"the model sent {what} instead of speech")
        return transcript if transcript is not None else "".join(deltas)

    @staticmethod
    def _check_done(response: dict[str, Any]) -> None:
        status = response.get("status")
        if status == "completed":
            return
        details = response.get("status_details") or {}
        if status == "failed":
            error = details.get("error") or {}
            raise SpeechFailed(
                "error_event", f"response failed: {error.get('code')}: {error.get('message')}"
            )
        raise SpeechFailed("incomplete", f"response {status}: {details.get('reason')}")
