"""Issue 21 end to end: voice replies through the Realtime API, and every way back to text.

A customer's voice note goes into the bot over HTTP, the bot transcribes it (fake OpenAI),
answers (fake model), speaks the answer over the fake Realtime websocket and sends the
OGG/Opus note through the fake Whapi, whose recorded body is decoded with libsndfile. Each
failure of the synthesis (connect, error event, timeout, dropped socket, text-only answer,
incomplete response, unfaithful transcript, encoding, WhatsApp's length limit) must send the
reply as text exactly once, close the socket, and count the reason in ``/metrics``. The start
refuses the HTTP speech backend from its shutdown date, and warns about retired model ids.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile
import trio
from prometheus_client.parser import text_string_to_metric_families

from actors.settings import SPEECH_SHUTDOWN
from actors.voice.realtime import REASONS
from gateway.service import Service, StartupError
from sandbox import payloads
from sandbox.whapi import FakeWhapi
from tests.harness import Bot, Fakes, make_settings, open_bot, open_fakes, wait_until
from tests.process import SERVE, bot_environ, clean_environ

USER = "573001234567"
CHAT = f"{USER}@s.whatsapp.net"
ANSWER = "Claro, Ana. Te esperamos el sábado en la recepción del hotel."


def real_ogg(seconds: float = 1.0) -> bytes:
    """A real OGG/Opus voice note, as a customer's phone would send."""
    t = np.arange(int(48000 * seconds)) / 48000
    samples = (0.2 * np.sin(2 * np.pi * 330 * t) * 32767).astype("<i2")
    out = io.BytesIO()
    soundfile.write(out, samples, 48000, format="OGG", subtype="OPUS")
    return out.getvalue()


async def voice_turn(fakes: Fakes, bot: Bot, note: bytes, message_id: str = "voice-1") -> None:
    link = fakes.whapi.add_media(message_id, note, "audio/ogg; codecs=opus")
    await bot.post(payloads.webhook([payloads.voice_message(USER, link=link)]))
    await fakes.whapi.wait_sent(1, to=CHAT)


async def fallbacks(bot: Bot) -> dict[str, float]:
    """``wabot_voice_fallbacks_total`` by reason, as ``/metrics`` reports it."""
    text = (await bot.http.get(f"{bot.url}/metrics")).text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "wabot_voice_fallbacks_total":
                out[sample.labels["reason"]] = sample.value
    return out


def voice_sends(whapi: FakeWhapi) -> list[Any]:
    return [c for c in whapi.calls if c.path == "/messages/voice"]


def decode_data_url(media: str) -> tuple[np.ndarray, int]:
    prefix = "data:audio/ogg;base64,"
    assert media.startswith(prefix)
    return soundfile.read(io.BytesIO(base64.b64decode(media[len(prefix) :])))


async def test_a_voice_note_is_answered_with_a_voice_note_end_to_end(tmp_path: Path) -> None:
    note = real_ogg()
    async with open_fakes() as fakes:
        fakes.openai.transcripts[hashlib.sha256(note).hexdigest()] = "¿tienen habitación?"
        fakes.openai.responder = lambda request: ANSWER
        async with open_bot(fakes, make_settings(fakes, tmp_path)) as bot:
            await voice_turn(fakes, bot, note)
            counted = await fallbacks(bot)
        assert set(counted) == set(REASONS) and sum(counted.values()) == 0
        (sent,) = fakes.whapi.sent_to(CHAT)
        assert sent.type == "voice"
        (call,) = voice_sends(fakes.whapi)
        assert call.json["mime_type"] == "audio/ogg; codecs=opus"
        samples, rate = decode_data_url(sent.media)
        assert rate == 24000
        seconds = len(samples) / rate
        expected = len(ANSWER) * fakes.openai.realtime.seconds_per_char
        assert abs(seconds - expected) < 0.1, (seconds, expected)
        assert np.abs(samples).max() > 0.1, "the decoded note is silent"
        (socket,) = fakes.openai.realtime.sessions
        await wait_until(lambda: socket.closed)
        assert socket.headers["authorization"] == f"Bearer {fakes.openai.token}"
        assert socket.model == "gpt-realtime-2.1-mini"
        update, create = socket.events
        output = update["session"]["audio"]["output"]
        pcm = {"type": "audio/pcm", "rate": 24000}
        assert output == {"format": pcm, "voice": "marin", "speed": 1.0}
        assert create["response"]["conversation"] == "none"
        assert create["response"]["input"][0]["content"][0]["text"] == ANSWER
        assert [r.transcript for r in socket.readings] == [ANSWER]
        assert not fakes.openai.realtime.invalid_events
        assert not fakes.whapi.invalid_calls and not fakes.openai.invalid_calls


async def test_a_long_reply_is_spoken_sentence_by_sentence_in_one_note(tmp_path: Path) -> None:
    sentences = [f"Esta es la frase número {n} de una respuesta larga para Ana." for n in range(8)]
    answer = " ".join(sentences)
    async with open_fakes() as fakes:
        fakes.openai.responder = lambda request: answer
        settings = make_settings(fakes, tmp_path, speech_chunk_chars=130, voice_max_chars=1000)
        async with open_bot(fakes, settings) as bot:
            await voice_turn(fakes, bot, real_ogg())
        (sent,) = fakes.whapi.sent_to(CHAT)
        assert sent.type == "voice"
        (socket,) = fakes.openai.realtime.sessions  # one websocket for the whole reply
        texts = [r.text for r in socket.readings]
        assert len(texts) == 4 and " ".join(texts) == answer
        assert all(len(text) <= 130 for text in texts)
        samples, rate = decode_data_url(sent.media)
        spoken = sum(len(t) for t in texts) * fakes.openai.realtime.seconds_per_char
        assert abs(len(samples) / rate - (spoken + 3 * 0.25)) < 0.2


FAILURES = {
    "connect": {"http": {"status": 503}},
    "connect-refused-key": {"http": {"status": 401}, "reason": "connect"},
    "connect-unanswered": {
        "http": {"drop": True},
        "settings": {"speech_connect_timeout_seconds": 0.3},
        "reason": "connect",
    },
    "error_event": {"realtime": {"effect": "error", "stage": "response"}},
    "error_event-at-session": {
        "realtime": {"effect": "error", "stage": "session"},
        "reason": "error_event",
    },
    "error_event-mid-audio": {
        "realtime": {"effect": "error", "stage": "audio"},
        "reason": "error_event",
    },
    "timeout": {"realtime": {"effect": "latency", "stage": "response", "delay": 2.0}},
    "dropped": {"realtime": {"effect": "drop", "stage": "audio"}},
    "dropped-at-session": {"realtime": {"effect": "drop", "stage": "session"}, "reason": "dropped"},
    "text_only": {"realtime": {"effect": "text_only"}},
    "incomplete": {"realtime": {"effect": "incomplete"}},
    "unfaithful": {
        "realtime": {"effect": "transcript", "transcript": "Claro. Te esperamos el domingo."}
    },
    "encoding": {"realtime": {"effect": "odd_audio"}},
    "too_long": {"settings": {"voice_max_seconds": 1.0}},
}


@pytest.mark.parametrize("case", sorted(FAILURES))
async def test_a_failed_synthesis_sends_the_reply_as_text_exactly_once(
    tmp_path: Path, case: str
) -> None:
    spec = FAILURES[case]
    reason = spec.get("reason", case)
    async with open_fakes() as fakes:
        fakes.openai.responder = lambda request: ANSWER
        if "http" in spec:
            fakes.openai.faults.add("/v1/realtime", method="GET", **spec["http"])
        if "realtime" in spec:
            fakes.openai.realtime.faults.add(**spec["realtime"])
        settings = make_settings(
            fakes, tmp_path, speech_event_timeout_seconds=0.5, **spec.get("settings", {})
        )
        async with open_bot(fakes, settings) as bot:
            await voice_turn(fakes, bot, real_ogg())
            counted = await fallbacks(bot)
            await trio.sleep(0.3)  # nothing else may go out
        assert [(m.type, m.body) for m in fakes.whapi.sent_to(CHAT)] == [("text", ANSWER)]
        assert not voice_sends(fakes.whapi)
        assert counted[reason] == 1 and sum(counted.values()) == 1, counted
        sockets = fakes.openai.realtime.sessions
        assert len(sockets) == 1
        await wait_until(lambda: sockets[0].closed and fakes.openai.realtime.open_sockets == 0)
        assert not fakes.openai.realtime.invalid_events


async def test_a_reply_that_must_be_read_never_reaches_the_synthesizer(tmp_path: Path) -> None:
    async with open_fakes() as fakes:
        fakes.openai.responder = lambda request: "Son 2 noches por $480.000 COP, Ana."
        async with open_bot(fakes, make_settings(fakes, tmp_path)) as bot:
            await voice_turn(fakes, bot, real_ogg())
            counted = await fallbacks(bot)
        assert [m.type for m in fakes.whapi.sent_to(CHAT)] == ["text"]
        assert not fakes.openai.realtime.sessions
        assert sum(counted.values()) == 0


async def test_the_http_backend_is_refused_at_start_from_its_shutdown_date(
    tmp_path: Path,
) -> None:
    async with open_fakes() as fakes:
        settings = make_settings(
            fakes, tmp_path / "data", speech_backend="http", speech_model="gpt-4o-mini-tts"
        )
        with pytest.raises(StartupError, match="WABOT_SPEECH_BACKEND") as refused:
            await Service(settings, today=SPEECH_SHUTDOWN).run()
        assert "2027-01-06" in str(refused.value) and "WABOT_SPEECH_BACKEND=realtime" in str(
            refused.value
        )
        assert not (tmp_path / "data" / "threads-data.json").exists(), "the store never opened"
        with pytest.raises(StartupError, match="WABOT_SPEECH_BACKEND"):
            await Service(settings, today=date(2027, 3, 1)).run()
        # The day before, it starts (and stops again at once).
        service = Service(settings, today=date(2027, 1, 5))
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            service.stop()
        assert service.finished.is_set()


@pytest.mark.skipif(
    date.today() >= SPEECH_SHUTDOWN, reason="the http backend is refused from its shutdown date"
)
async def test_the_http_backend_still_speaks_until_its_shutdown_date(tmp_path: Path) -> None:
    async with open_fakes() as fakes:
        fakes.openai.responder = lambda request: ANSWER
        settings = make_settings(
            fakes, tmp_path, speech_backend="http", speech_model="gpt-4o-mini-tts"
        )
        async with open_bot(fakes, settings) as bot:
            await voice_turn(fakes, bot, real_ogg())
        assert [m.type for m in fakes.whapi.sent_to(CHAT)] == ["voice"]
        (speech,) = [c for c in fakes.openai.calls if c.path == "/v1/audio/speech"]
        assert speech.json["model"] == "gpt-4o-mini-tts" and speech.json["voice"] == "marin"
        assert not fakes.openai.realtime.sessions


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"speech_backend": "http"}, "WABOT_SPEECH_BACKEND"),  # no speech model for it (or late)
        ({"speech_voice": "nova"}, "WABOT_SPEECH_VOICE"),
        ({"speech_model": "tts-1"}, "WABOT_SPEECH_MODEL"),
    ],
)
async def test_wabot_serve_refuses_speech_settings_that_cannot_work(
    tmp_path: Path, fields: dict[str, str], named: str
) -> None:
    async with open_fakes() as fakes:
        env = {**clean_environ(), **bot_environ(fakes, tmp_path / "data", **fields)}
        with trio.fail_after(30):
            done = await trio.run_process(
                list(SERVE),
                env=env,
                cwd=str(tmp_path),
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
    assert done.returncode == 2, done.stderr.decode()[-2000:]
    last = done.stderr.decode().strip().splitlines()[-1]
    assert last.startswith("wabot: ") and named in last


async def test_retired_model_ids_are_warned_about_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="actors.settings")
    async with open_fakes() as fakes:
        settings = make_settings(
            fakes,
            tmp_path,
            transcription_model="gpt-4o-mini-transcribe",
            speech_model="gpt-realtime-mini",
        )
        async with open_bot(fakes, settings) as bot:
            await voice_turn(fakes, bot, real_ogg())
        warnings = [r.getMessage() for r in caplog.records if r.name == "actors.settings"]
        assert len(warnings) == 2, warnings
        transcription = next(w for w in warnings if w.startswith("WABOT_TRANSCRIPTION_MODEL"))
        assert "2027-02-26" in transcription and "gpt-transcribe" in transcription
        speech = next(w for w in warnings if w.startswith("WABOT_SPEECH_MODEL"))
        assert "2027-01-20" in speech and "gpt-realtime-2.1-mini" in speech
        # A retired alias still works until its date: the answer went out in voice.
        assert [m.type for m in fakes.whapi.sent_to(CHAT)] == ["voice"]
        assert fakes.openai.realtime.sessions[0].model == "gpt-realtime-mini"
