"""Audio with OpenAI: transcription of voice notes in, speech synthesis out.

The synthesizer sits behind a small interface (``Synthesizer``), so the turn does not know
which backend speaks: ``WABOT_SPEECH_BACKEND=realtime`` (the default, ``actors.voice.realtime``:
OpenAI's Realtime API over a trio websocket) or ``http`` (``OpenAIAudio.synthesize`` on
``/v1/audio/speech``, whose models OpenAI shuts down on 2027-01-06; ``speech_setting_problems``
refuses it at start from that day, naming the setting to change).
``speakable`` decides when a reply may be spoken: prices, nights, amounts and links are
forced to text (a customer must be able to read them back), and so is anything long.

``AudioShelf`` keeps synthesized notes for ``GET /audio/<file>`` when ``WABOT_PUBLIC_URL`` is
set: unguessable names, a bounded number of files, each deleted after a few minutes.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Protocol, TypeVar

import openai
import trio

from actors.settings import SPEECH_SHUTDOWN, Settings, warn_retired_models
from actors.upstream.model import FAILURES, pooled_http_client, retryable
from actors.upstream.retry import RetryPolicy

log = logging.getLogger("actors.voice.audio")
T = TypeVar("T")

AUDIO_NAME = re.compile(r"^[A-Za-z0-9_-]{22,64}\.ogg$")


class AudioError(Exception):
    """Transcription or synthesis failed."""


class Synthesizer(Protocol):
    async def synthesize(self, text: str) -> bytes:
        """OGG/Opus audio of ``text`` (WhatsApp's voice-note format)."""


#: The models of ``/v1/audio/speech`` (the ``http`` backend), all shut down on 2027-01-06.
HTTP_SPEECH_MODELS = frozenset(
    {"tts-1", "tts-1-hd", "gpt-4o-mini-tts", "gpt-4o-mini-tts-2025-12-15"}
)
#: The Realtime API's built-in voices (``nova``, the original bot's, is not one of them).
REALTIME_VOICES = (
    "alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar"
)  # fmt: skip


def speech_setting_problems(settings: Settings, *, today: date | None = None) -> list[str]:
    """Why the configured speech cannot work (one line each, naming the setting); [] if it can.

    Checked at start: the ``http`` backend from its shutdown date on, a model or voice that
    the chosen backend does not have. Nothing is checked with ``WABOT_VOICE_REPLIES`` off.
    """
    if not settings.voice_replies:
        return []
    today = today or datetime.now(UTC).date()
    backend, model, voice = settings.speech_backend, settings.speech_model, settings.speech_voice
    problems: list[str] = []
    if backend == "http":
        if today >= SPEECH_SHUTDOWN:
            problems.append(
                f"WABOT_SPEECH_BACKEND=http: OpenAI shut /v1/audio/speech down on "
                f"{SPEECH_SHUTDOWN:%Y-%m-%d}; set WABOT_SPEECH_BACKEND=realtime (with "
                "WABOT_SPEECH_MODEL=gpt-realtime-2.1-mini), or WABOT_VOICE_REPLIES=false"
            )
        elif model not in HTTP_SPEECH_MODELS:
            problems.append(
                f"WABOT_SPEECH_BACKEND=http needs a /v1/audio/speech model in WABOT_SPEECH_MODEL "
                f"({', '.join(sorted(HTTP_SPEECH_MODELS))}), got {model!r}"
            )
        return problems
    if model in HTTP_SPEECH_MODELS:
        problems.append(
            f"WABOT_SPEECH_MODEL={model} is a /v1/audio/speech model, not a Realtime one; set "
            "WABOT_SPEECH_MODEL=gpt-realtime-2.1-mini (or WABOT_SPEECH_BACKEND=http until "
            f"{SPEECH_SHUTDOWN:%Y-%m-%d})"
        )
    if voice not in REALTIME_VOICES and not voice.startswith("voice_"):
        problems.append(
            f"WABOT_SPEECH_VOICE={voice} is not a Realtime voice; set it to one of "
            f"{', '.join(REALTIME_VOICES)} (marin and cedar sound best), or a custom voice_… id"
        )
    return problems


def check_audio_models_at_start(settings: Settings, *, today: date | None = None) -> list[str]:
    """At start: log a warning per retired model id; return what refuses the start."""
    warn_retired_models(settings, today=today)
    return speech_setting_problems(settings, today=today)


def speakable(text: str, *, patterns: Sequence[str], max_chars: int) -> bool:
    if not text.strip() or len(text) > max_chars:
        return False
    return not any(re.search(pattern, text, re.I) for pattern in patterns)


class OpenAIAudio:
    """Transcription and speech on one ``AsyncOpenAI`` client (closed by ``aclose``)."""

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str | None,
        timeout: float,
        policy: RetryPolicy,
        transcription_model: str,
        transcription_language: str | None,
        speech_model: str,
        speech_voice: str,
        pool_size: int = 8,
    ) -> None:
        self._client = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=base_url,
            max_retries=0,
            timeout=timeout,
            http_client=pooled_http_client(pool_size),
        )
        self._timeout = timeout
        self._policy = policy
        self.transcription_model = transcription_model
        self.transcription_language = transcription_language
        self.speech_model = speech_model
        self.speech_voice = speech_voice

    async def aclose(self) -> None:
        await self._client.close()

    async def transcribe(self, content: bytes, filename: str, mime_type: str) -> str:
        extra = {"language": self.transcription_language} if self.transcription_language else {}

        async def call() -> str:
            result = await self._client.audio.transcriptions.create(
                model=self.transcription_model,
                file=(filename, content, mime_type),
                response_format="json",
                **extra,
            )
            return (getattr(result, "text", None) or "").strip()

        return await self._with_retries(call, "transcription")

    async def synthesize(self, text: str) -> bytes:
        async def call() -> bytes:
            response = await self._client.audio.speech.create(
                model=self.speech_model,
                voice=self.speech_voice,
                input=text,
                response_format="opus",
            )
            return await response.aread()

        return await self._with_retries(call, "speech")

    async def _with_retries(self, call: Callable[[], Awaitable[T]], what: str) -> T:
        """One deadline per attempt, retried by ``model.retryable``; then ``AudioError``."""
        try:
            async for attempt in self._policy.retrying(retryable, what=f"audio {what}"):
                with attempt, trio.fail_after(self._timeout):
                    return await call()
        except FAILURES as exc:
            raise AudioError(f"{what} failed: {exc!r}") from exc
        raise AssertionError("unreachable: the retry loop returns or raises")


class AudioShelf:
    """Synthesized voice notes served at ``/audio/<name>`` for a short time, then deleted."""

    def __init__(self, root: Path, *, ttl: float, max_files: int = 1000) -> None:
        self.root = root
        self.ttl = ttl
        self.max_files = max_files
        self._files: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._files)

    async def put(self, content: bytes) -> str:
        name = f"{secrets.token_urlsafe(24)}.ogg"
        path = self.root / name

        def write() -> None:
            self.root.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)

        await trio.to_thread.run_sync(write)
        self._files[name] = trio.current_time() + self.ttl
        while len(self._files) > self.max_files:
            old, _ = self._files.popitem(last=False)
            (self.root / old).unlink(missing_ok=True)
        return name

    def path(self, name: str) -> Path | None:
        """The file for ``name`` if it was shelved by us and has not expired; else None.

        Only names this shelf created are ever looked up, so no request can reach a path
        outside the shelf (``..``, encoded forms, absolute paths, symlinks: all unknown names).
        """
        if not AUDIO_NAME.match(name):
            return None
        expires = self._files.get(name)
        if expires is None or expires <= trio.current_time():
            return None
        path = self.root / name
        return path if path.is_file() and not path.is_symlink() else None

    def sweep(self) -> int:
        now = trio.current_time()
        expired = [name for name, expires in self._files.items() if expires <= now]
        for name in expired:
            del self._files[name]
            (self.root / name).unlink(missing_ok=True)
        return len(expired)

    async def run(self, interval: float) -> None:
        try:
            while True:
                await trio.sleep(interval)
                self.sweep()
        finally:
            for name in list(self._files):
                (self.root / name).unlink(missing_ok=True)
            self._files.clear()
