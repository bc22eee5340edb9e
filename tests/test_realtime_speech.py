"""The Realtime synthesizer's parts: its URL, sentence chunks, the faithfulness check, the
OGG/Opus encoder, and the synthesizer itself against the fake (sockets bounded and closed).
"""

from __future__ import annotations

import io
import math
from datetime import date

import numpy as np
import pytest
import soundfile
import trio

from actors.runtime.telemetry import Telemetry
from actors.settings import Settings, retirement, warn_retired_models
from actors.voice import faithful
from actors.voice.audio import speech_setting_problems
from actors.voice.realtime import RealtimeSynthesizer, SpeechFailed, realtime_url, speech_chunks
from actors.voice.realtime import spoken_text as spoken
from actors.voice.voicenote import VoiceNoteError, encode_voice_note
from sandbox.openai import FakeOpenAI
from tests.harness import wait_until


def synthesizer(fake: FakeOpenAI, **overrides: object) -> RealtimeSynthesizer:
    values: dict[str, object] = {
        "api_key": fake.token,
        "base_url": fake.url,
        "model": "gpt-realtime-2.1-mini",
        "voice": "marin",
        "timeout": 5.0,
        "connect_timeout": 2.0,
        "event_timeout": 2.0,
        **overrides,
    }
    return RealtimeSynthesizer(**values)  # type: ignore[arg-type]


URL = "/v1/realtime?model=gpt-realtime-2.1-mini"


@pytest.mark.parametrize(
    ("base", "url"),
    [
        (None, f"wss://api.openai.com{URL}"),
        ("https://api.openai.com/v1/", f"wss://api.openai.com{URL}"),
        ("http://127.0.0.1:8123/v1", f"ws://127.0.0.1:8123{URL}"),
        ("https://proxy.example/openai/v1", f"wss://proxy.example/openai{URL}"),
    ],
)
def test_the_websocket_url_comes_from_the_openai_base_url(base: str | None, url: str) -> None:
    assert realtime_url(base, "gpt-realtime-2.1-mini") == url


def test_the_model_is_quoted_in_the_url_and_a_bad_base_url_is_refused() -> None:
    assert realtime_url("http://h/v1", "a b&c").endswith("?model=a%20b%26c")
    with pytest.raises(ValueError):
        realtime_url("ftp://h/v1", "m")


def test_long_replies_are_cut_at_sentences_within_the_limit() -> None:
    text = "Primera frase corta. ¿Segunda frase? ¡Tercera!\nCuarta línea sin punto"
    assert speech_chunks(text, 400) == [text.replace("\n", " ")]
    assert speech_chunks(text, 40) == [
        "Primera frase corta. ¿Segunda frase?",
        "¡Tercera! Cuarta línea sin punto",
    ]
    long_sentence = ", ".join(f"cláusula número {n}" for n in range(40)) + "."
    chunks = speech_chunks(long_sentence, 100)
    assert all(len(chunk) <= 100 for chunk in chunks)
    assert " ".join(chunks).split() == long_sentence.split()
    no_spaces = "x" * 250
    assert speech_chunks(no_spaces, 100) == ["x" * 100, "x" * 100, "x" * 50]


def test_whatsapp_formatting_is_not_read_aloud() -> None:
    assert spoken("*Hola* _Ana_, ~no~ `ya`:\n- uno\n• dos\n1. tres") == (
        "Hola Ana, no ya:\nuno\ndos\ntres"
    )


SABADO = "Hola, te esperamos el sábado a las 3."
GRACIAS = "Gracias por escribirnos hoy, mañana temprano te confirmo todo lo que pediste."
CHECKS = [
    ("Hola Ana, te esperamos el sábado.", "hola ana te esperamos el sabado", True),
    (SABADO, "Hola, te esperamos el sábado a las 3", True),
    (SABADO, "Hola, te esperamos el sábado a las tres.", False),  # numbers exactly
    ("Tu código es 1.250.", "Tu código es 1,250.", True),
    ("Hola, Ana Gómez confirma.", "Hola, Ana Gomez confirma.", True),
    ("Hola, Ana confirma.", "Hola, Anna confirma.", False),  # names exactly
    ("Cuesta $50 la noche, claro que sí.", "Cuesta 50 dólares la noche, claro que sí.", False),
    ("Gracias por escribirnos, mañana te confirmo todo.", "Gracias, mañana te confirmo.", False),
    (GRACIAS, GRACIAS.replace("pediste", "pedistes"), True),  # one word in 13: within 0.15
    ("Hola.", "", False),
]


@pytest.mark.parametrize(("text", "transcript", "ok"), CHECKS)
def test_the_faithfulness_check(text: str, transcript: str, ok: bool) -> None:
    verdict = faithful.check(text, transcript, max_distance=0.15)
    assert verdict.faithful is ok, verdict


def test_a_sentence_start_is_not_taken_for_a_name() -> None:
    assert faithful.names("Claro. Hoy viene Ana. ¿Mañana? Bogotá espera.") == ["ana"]
    assert faithful.word_distance(["a", "b", "c"], ["a", "x", "c"]) == pytest.approx(1 / 3)
    assert faithful.word_distance([], []) == 0.0


def pcm_tone(seconds: float, rate: int = 24000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * math.pi * 300 * t) * 32767).astype("<i2").tobytes()


def test_pcm_becomes_an_ogg_opus_voice_note_that_decodes_back() -> None:
    note = encode_voice_note(pcm_tone(2.0), rate=24000, max_seconds=10, max_bytes=2**20)
    assert note.ogg.startswith(b"OggS") and b"OpusHead" in note.ogg[:200]
    assert note.seconds == pytest.approx(2.0)
    info = soundfile.info(io.BytesIO(note.ogg))
    assert (info.format, info.subtype, info.samplerate, info.channels) == ("OGG", "OPUS", 24000, 1)
    samples, rate = soundfile.read(io.BytesIO(note.ogg))
    assert rate == 24000 and abs(len(samples) / rate - 2.0) < 0.05
    odd = encode_voice_note(pcm_tone(1.0) + b"\x01", rate=24000, max_seconds=10, max_bytes=2**20)
    assert odd.seconds == pytest.approx(1.0)  # a trailing half sample is dropped


@pytest.mark.parametrize(
    ("pcm", "rate", "limits", "reason"),
    [
        (b"", 24000, {}, "encoding"),
        (b"\x00", 24000, {}, "encoding"),
        (pcm_tone(0.5, 44100), 44100, {}, "encoding"),
        (pcm_tone(3.0), 24000, {"max_seconds": 2.0}, "too_long"),
        (pcm_tone(3.0), 24000, {"max_bytes": 1000}, "too_big"),
    ],
)
def test_the_encoder_refuses_what_cannot_be_a_voice_note(
    pcm: bytes, rate: int, limits: dict[str, float], reason: str
) -> None:
    with pytest.raises(VoiceNoteError) as refused:
        encode_voice_note(
            pcm,
            rate=rate,
            max_seconds=limits.get("max_seconds", 60),
            max_bytes=int(limits.get("max_bytes", 2**20)),
        )
    assert refused.value.reason == reason


async def test_a_long_text_is_one_socket_and_one_response_per_chunk(
    fake_openai: FakeOpenAI,
) -> None:
    telemetry = Telemetry()
    speaker = synthesizer(fake_openai, chunk_chars=60, telemetry=telemetry)
    text = "Hola, Ana. " + " ".join(f"Esta es la frase {n} de la respuesta." for n in range(5))
    ogg = await speaker.synthesize(text)
    (socket,) = fake_openai.realtime.sessions
    chunks = speech_chunks(text, 60)
    assert len(chunks) > 2 and all(len(chunk) <= 60 for chunk in chunks)
    assert [e["type"] for e in socket.events] == ["session.update"] + ["response.create"] * len(
        chunks
    )
    assert [r.text for r in socket.readings] == chunks
    for event in socket.events[1:]:
        assert event["response"]["max_output_tokens"] == 4096
        assert "word for word" in event["response"]["instructions"]
    samples, rate = soundfile.read(io.BytesIO(ogg))
    said = sum(len(r.text) for r in socket.readings) * fake_openai.realtime.seconds_per_char
    assert abs(len(samples) / rate - (said + (len(chunks) - 1) * 0.25)) < 0.1
    await wait_until(lambda: socket.closed)
    assert telemetry.registry.get_sample_value("wabot_speech_seconds_count") == 1


async def test_a_custom_voice_goes_by_id(fake_openai: FakeOpenAI) -> None:
    await synthesizer(fake_openai, voice="voice_1234").synthesize("Hola.")
    update = fake_openai.realtime.sessions[0].events[0]
    assert update["session"]["audio"]["output"]["voice"] == {"id": "voice_1234"}


async def test_at_most_max_sockets_are_open_at_once(fake_openai: FakeOpenAI) -> None:
    fake_openai.realtime.faults.add("latency", delay=0.2, times=math.inf)
    speaker = synthesizer(fake_openai, max_sockets=2)
    async with trio.open_nursery() as nursery:
        for n in range(6):
            nursery.start_soon(speaker.synthesize, f"Hola número {n}.")
    assert fake_openai.realtime.max_open_sockets == 2
    assert len(fake_openai.realtime.sessions) == 6
    await wait_until(lambda: all(s.closed for s in fake_openai.realtime.sessions))


async def test_the_whole_synthesis_has_a_deadline_and_the_socket_still_closes(
    fake_openai: FakeOpenAI,
) -> None:
    fake_openai.realtime.delta_seconds = 0.05
    fake_openai.realtime.faults.add("latency", stage="audio", delay=0.1)
    telemetry = Telemetry()
    speaker = synthesizer(fake_openai, timeout=0.5, event_timeout=1.0, telemetry=telemetry)
    started = trio.current_time()
    with pytest.raises(SpeechFailed) as failed:
        await speaker.synthesize("Una respuesta bastante larga que tarda en llegar entera.")
    assert failed.value.reason == "timeout"
    assert trio.current_time() - started < 1.0
    await wait_until(lambda: fake_openai.realtime.open_sockets == 0)
    value = telemetry.registry.get_sample_value
    assert value("wabot_voice_fallbacks_total", {"reason": "timeout"}) == 1


async def test_a_connection_timeout_is_a_connect_failure(fake_openai: FakeOpenAI) -> None:
    fake_openai.faults.delay("/v1/realtime", 1.0, times=1)
    with pytest.raises(SpeechFailed) as failed:
        await synthesizer(fake_openai, connect_timeout=0.2).synthesize("Hola.")
    assert failed.value.reason == "connect"


async def test_nothing_to_say_never_opens_a_socket(fake_openai: FakeOpenAI) -> None:
    with pytest.raises(SpeechFailed) as failed:
        await synthesizer(fake_openai).synthesize("*_~~_*")
    assert failed.value.reason == "empty" and not fake_openai.realtime.sessions


def test_speech_settings_that_cannot_work_are_named() -> None:
    ok = Settings()
    assert speech_setting_problems(ok, today=date(2030, 1, 1)) == []
    http = Settings(speech_backend="http", speech_model="gpt-4o-mini-tts")
    assert speech_setting_problems(http, today=date(2027, 1, 5)) == []
    (late,) = speech_setting_problems(http, today=date(2027, 1, 6))
    assert late.startswith("WABOT_SPEECH_BACKEND=http") and "2027-01-06" in late
    assert speech_setting_problems(Settings(speech_backend="http"), today=date(2026, 12, 1))
    (voice,) = speech_setting_problems(Settings(speech_voice="nova"), today=date(2026, 12, 1))
    assert voice.startswith("WABOT_SPEECH_VOICE=nova") and "marin" in voice
    off = Settings(voice_replies=False, speech_backend="http")
    assert speech_setting_problems(off, today=date(2027, 6, 1)) == []


def test_retired_models_and_their_dates() -> None:
    assert retirement("gpt-4o-mini-tts-2025-12-15") == (date(2027, 1, 6), retirement("tts-1")[1])  # type: ignore[index]
    assert retirement("gpt-realtime-mini-2025-10-06")[0] == date(2027, 1, 20)  # type: ignore[index]
    assert retirement("gpt-realtime")[0] == date(2027, 1, 20)  # type: ignore[index]
    assert retirement("whisper-1") == (date(2027, 2, 26), "gpt-transcribe")
    for alive in ("gpt-realtime-2.1-mini", "gpt-realtime-2.1", "gpt-transcribe", "gpt-5-mini"):
        assert retirement(alive) is None
    assert warn_retired_models(Settings()) == []
    lines = warn_retired_models(
        Settings(openai_model="gpt-realtime", speech_model="tts-1"), today=date(2027, 1, 10)
    )
    assert (
        lines[0].startswith("OPENAI_MODEL=gpt-realtime")
        and "shuts it down on 2027-01-20" in lines[0]
    )
    assert (
        lines[1].startswith("WABOT_SPEECH_MODEL=tts-1") and "shut it down on 2027-01-06" in lines[1]
    )
