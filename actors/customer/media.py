"""Inbound media: download with a size cap and a deadline, and turn it into model input.

Whapi gives a ``link`` when auto-download is on; otherwise the media is fetched with
``GET /media/{id}`` and the bearer token. Voice notes are transcribed (``actors.voice.audio``);
images go to the model as image input, by link or (``WABOT_IMAGE_INLINE``) inline as a data
URL when OpenAI cannot reach Whapi's links. Any failure becomes a short bracketed note in the
text, so the customer still gets an answer ("I could not listen to your audio…") instead of
silence.
"""

from __future__ import annotations

import base64
import logging
from urllib.parse import quote

import attrs
import httpx
import trio

from actors.customer.events import InboundMessage, MediaRef

log = logging.getLogger("actors.customer.media")


class MediaError(Exception):
    """The media could not be downloaded (missing, too large, too slow, upstream error)."""


@attrs.frozen
class Downloaded:
    content: bytes
    mime_type: str


class MediaFetcher:
    """Owns an ``httpx.AsyncClient`` for media downloads (closed by ``aclose``)."""

    def __init__(
        self,
        *,
        whapi_base_url: str,
        whapi_token: str,
        max_bytes: int,
        timeout: float,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._base = whapi_base_url.rstrip("/")
        self._token = whapi_token
        self.max_bytes = max_bytes
        self.timeout = timeout
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            follow_redirects=True,
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def fetch(self, media: MediaRef) -> Downloaded:
        if media.file_size is not None and media.file_size > self.max_bytes:
            raise MediaError(f"media of {media.file_size} bytes is over the cap")
        attempts: list[tuple[str, dict[str, str]]] = []
        if media.link:
            attempts.append((media.link, {}))
        if media.media_id:
            attempts.append(
                (
                    f"{self._base}/media/{quote(media.media_id, safe='')}",
                    {"Authorization": f"Bearer {self._token}"},
                )
            )
        if not attempts:
            raise MediaError("the message has neither a link nor a media id")
        errors = []
        for url, headers in attempts:
            try:
                with trio.fail_after(self.timeout):
                    return await self._download(url, headers, media.mime_type)
            except (MediaError, httpx.HTTPError, trio.TooSlowError) as exc:
                errors.append(f"{exc!r}")
        raise MediaError("; ".join(errors))

    async def _download(self, url: str, headers: dict[str, str], mime: str | None) -> Downloaded:
        async with self._http.stream("GET", url, headers=headers) as response:
            if response.status_code != 200:
                raise MediaError(f"HTTP {response.status_code} downloading media")
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > self.max_bytes:
                raise MediaError(f"media of {declared} bytes is over the cap")
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > self.max_bytes:
                    raise MediaError("media is over the size cap")
                chunks.append(chunk)
            content_type = response.headers.get("content-type", "").split(";")[0].strip()
        return Downloaded(b"".join(chunks), mime or content_type or "application/octet-stream")


@attrs.frozen
class PreparedInput:
    """A batch of messages as the model will see it."""

    text: str
    image_urls: tuple[str, ...] = ()
    had_voice: bool = False


def voice_filename(mime_type: str) -> str:
    """A filename whose extension the transcription endpoint accepts."""
    mime = mime_type.lower()
    for needle, extension in (
        ("ogg", "ogg"),
        ("opus", "ogg"),
        ("mpeg", "mp3"),
        ("mp3", "mp3"),
        ("mp4", "m4a"),
        ("m4a", "m4a"),
        ("aac", "m4a"),
        ("wav", "wav"),
        ("webm", "webm"),
        ("flac", "flac"),
    ):
        if needle in mime:
            return f"voice.{extension}"
    return "voice.ogg"


def data_url(downloaded: Downloaded) -> str:
    encoded = base64.b64encode(downloaded.content).decode("ascii")
    return f"data:{downloaded.mime_type};base64,{encoded}"


def describe_failure(message: InboundMessage) -> str:
    if message.is_voice:
        return "[nota de voz: no se pudo escuchar el audio]"
    return f"[{message.kind}: no se pudo abrir el archivo]"
