"""Audio with OpenAI: transcription of voice notes in, speech synthesis out.

The synthesizer sits behind a small interface (``Synthesizer``): OpenAI's current speech
models retire on 2027-01-06 and the Realtime replacement needs a websocket client that does
not run under trio, so another provider must be pluggable without touching the turn.
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
from pathlib import Path
from typing import Protocol, TypeVar

import openai
import trio

from actors.model import pooled_http_client
from actors.retry import Retryable, RetryPolicy, retrying

log = logging.getLogger("actors.voice")
T = TypeVar("T")

AUDIO_NAME = re.compile(r"^[A-Za-z0-9_-]{22,64}\.ogg$")


class AudioError(Exception):
    """Transcription or synthesis failed."""


class Synthesizer(Protocol):
    async def synthesize(self, text: str) -> bytes:
        """OGG/Opus audio of ``text`` (WhatsApp's voice-note format)."""


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
        """One deadline per attempt, retries on 429/5xx/network, ``AudioError`` at the end."""

        async def attempt(n: int) -> T:
            try:
                with trio.fail_after(self._timeout):
                    return await call()
            except (openai.RateLimitError, openai.InternalServerError) as exc:
                raise Retryable(f"{what}: {exc.status_code}") from exc
            except (openai.APIConnectionError, trio.TooSlowError) as exc:
                raise Retryable(f"{what}: network or timeout") from exc
            except openai.OpenAIError as exc:
                raise AudioError(f"{what} failed: {exc}") from exc

        try:
            return await retrying(attempt, self._policy, what=f"audio {what}")
        except (openai.OpenAIError, trio.TooSlowError) as exc:
            raise AudioError(f"{what} failed: {exc!r}") from exc


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
