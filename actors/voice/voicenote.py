"""PCM to a WhatsApp voice note: OGG/Opus, within WhatsApp's duration and size limits.

The Realtime API speaks 16-bit mono PCM at 24 kHz (or G.711); WhatsApp plays voice notes
from OGG/Opus. ``encode_voice_note`` does the conversion with libsndfile (the ``soundfile``
wheel bundles it, with libopus): CPU work of tens of milliseconds per minute of speech, so
callers run it in a worker thread. It is synchronous and pure, so the encoder can be tested,
and benchmarked, on its own.
"""

from __future__ import annotations

import io

import attrs
import numpy as np
import soundfile

#: The sample rates Opus encodes (libsndfile refuses any other).
OPUS_RATES = frozenset({48000, 24000, 16000, 12000, 8000})
#: The voice note's content type on Whapi's ``POST /messages/voice``.
VOICE_NOTE_MIME = "audio/ogg; codecs=opus"
PCM_SAMPLE_BYTES = 2


class VoiceNoteError(Exception):
    """The PCM could not become a voice note; ``reason`` is the metric's label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@attrs.frozen
class VoiceNote:
    """An encoded voice note and how long it plays."""

    ogg: bytes
    seconds: float


def pcm_seconds(pcm_bytes: int, rate: int) -> float:
    """How long ``pcm_bytes`` of 16-bit mono PCM play at ``rate``."""
    return pcm_bytes / PCM_SAMPLE_BYTES / rate


def encode_voice_note(
    pcm: bytes | bytearray, *, rate: int, max_seconds: float, max_bytes: int
) -> VoiceNote:
    """OGG/Opus of 16-bit little-endian mono ``pcm``; ``VoiceNoteError`` past the limits."""
    if rate not in OPUS_RATES:
        raise VoiceNoteError("encoding", f"Opus cannot encode {rate} Hz")
    usable = len(pcm) - len(pcm) % PCM_SAMPLE_BYTES
    if usable == 0:
        raise VoiceNoteError("encoding", "no audio to encode")
    seconds = pcm_seconds(usable, rate)
    if seconds > max_seconds:
        raise VoiceNoteError(
            "too_long", f"{seconds:.1f} s of speech; a voice note is at most {max_seconds:g} s"
        )
    samples = np.frombuffer(memoryview(pcm)[:usable], dtype="<i2")
    out = io.BytesIO()
    try:
        soundfile.write(out, samples, rate, format="OGG", subtype="OPUS")
    except (soundfile.LibsndfileError, RuntimeError, ValueError, TypeError) as exc:
        raise VoiceNoteError("encoding", f"libsndfile: {exc}") from exc
    ogg = out.getvalue()
    if not ogg.startswith(b"OggS") or b"OpusHead" not in ogg[:512]:
        raise VoiceNoteError("encoding", "libsndfile wrote no OGG/Opus stream")
    if len(ogg) > max_bytes:
        raise VoiceNoteError(
            "too_big", f"{len(ogg)} bytes; a voice note is at most {max_bytes} bytes"
        )
    return VoiceNote(ogg, seconds)
