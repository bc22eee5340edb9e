"""The fake Realtime API: handshake, event validation, the audio it streams, its faults.

Driven with a plain ``trio-websocket`` client (not wabot's), so the fake is checked on its own
terms; every server event it sends must parse as the openai SDK's ``RealtimeServerEvent``.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pydantic
import pytest
import trio
import trio_websocket
from openai.types.realtime import RealtimeServerEvent

from sandbox.openai import FakeOpenAI
from sandbox.realtime import PCM_RATE, RealtimeFaults, tone
from tests.harness import wait_until

SERVER_EVENT = pydantic.TypeAdapter(RealtimeServerEvent)
MODEL = "gpt-realtime-2.1-mini"
NOVA = {"output": {"voice": "nova"}}


def ws_url(fake: FakeOpenAI, model: str = MODEL) -> str:
    assert fake.url is not None
    return fake.url.replace("http://", "ws://") + f"/realtime?model={model}"


def auth(fake: FakeOpenAI) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Bearer {fake.token}".encode())]


async def next_event(ws: trio_websocket.WebSocketConnection) -> dict[str, Any]:
    with trio.fail_after(5):
        event = json.loads(await ws.get_message())
    SERVER_EVENT.validate_python(event)  # the SDK's own type accepts it
    return event


async def until(ws: trio_websocket.WebSocketConnection, kind: str) -> list[dict[str, Any]]:
    events = []
    while True:
        event = await next_event(ws)
        events.append(event)
        if event["type"] in (kind, "error"):
            return events


def response_create(text: str, **extra: Any) -> str:
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    body = {"conversation": "none", "output_modalities": ["audio"], "input": [item], **extra}
    return json.dumps({"type": "response.create", "response": body})


async def test_a_response_streams_the_tone_and_the_transcript(fake_openai: FakeOpenAI) -> None:
    async with trio_websocket.open_websocket_url(
        ws_url(fake_openai), extra_headers=auth(fake_openai)
    ) as ws:
        created = await next_event(ws)
        assert created["type"] == "session.created"
        assert created["session"]["model"] == MODEL
        await ws.send_message(
            json.dumps(
                {
                    "type": "session.update",
                    "session": {
                        "type": "realtime",
                        "output_modalities": ["audio"],
                        "audio": {"output": {"voice": "cedar", "speed": 1.2}},
                    },
                }
            )
        )
        updated = await next_event(ws)
        assert updated["session"]["audio"]["output"]["voice"] == "cedar"
        await ws.send_message(response_create("Hola, Ana."))
        events = await until(ws, "response.done")
    kinds = [e["type"] for e in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.done"
    pcm = b"".join(
        base64.b64decode(e["delta"]) for e in events if e["type"] == "response.output_audio.delta"
    )
    assert pcm == tone("Hola, Ana.", seconds_per_char=fake_openai.realtime.seconds_per_char)
    transcript = "".join(
        e["delta"] for e in events if e["type"] == "response.output_audio_transcript.delta"
    )
    (done,) = [e for e in events if e["type"] == "response.output_audio_transcript.done"]
    assert transcript == done["transcript"] == "Hola, Ana."
    assert events[-1]["response"]["status"] == "completed"
    (reading,) = fake_openai.realtime.sessions[0].readings
    assert reading.audio_bytes == len(pcm)
    await wait_until(lambda: fake_openai.realtime.sessions[0].closed)
    assert fake_openai.realtime.open_sockets == 0


def test_the_tone_is_deterministic_and_grows_with_the_text() -> None:
    short = tone("Hola", seconds_per_char=0.05)
    assert short == tone("Hola", seconds_per_char=0.05)
    assert len(short) == int(0.3 * PCM_RATE) * 2  # the minimum length
    long = tone("x" * 100, seconds_per_char=0.05)
    assert len(long) == int(5.0 * PCM_RATE) * 2
    assert tone("Hola", seconds_per_char=0.05) != tone("Adiós", seconds_per_char=0.05)


@pytest.mark.parametrize(
    ("event", "code", "param"),
    [
        (
            {"type": "session.update", "session": {"type": "realtime", "audio": NOVA}},
            "invalid_value",
            "session.audio.output.voice",
        ),
        (
            {"type": "session.update", "session": {"type": "realtime", "modalities": ["audio"]}},
            "unknown_parameter",
            "session.modalities",
        ),
        ({"type": "session.update"}, "missing_required_parameter", "session"),
        ({"type": "input_audio_buffer.append", "audio": ""}, "unsupported_by_fake", "type"),
        (
            {"type": "response.create", "response": {"conversation": "auto"}},
            "unsupported_by_fake",
            "response.conversation",
        ),
    ],
)
async def test_invalid_client_events_get_an_error_event_and_are_recorded(
    fake_openai: FakeOpenAI, event: dict[str, Any], code: str, param: str
) -> None:
    async with trio_websocket.open_websocket_url(
        ws_url(fake_openai), extra_headers=auth(fake_openai)
    ) as ws:
        await next_event(ws)
        await ws.send_message(json.dumps({**event, "event_id": "evt_1"}))
        error = await next_event(ws)
    assert error["type"] == "error"
    assert error["error"]["code"] == code and error["error"]["param"] == param
    assert error["error"]["event_id"] == "evt_1"
    assert len(fake_openai.realtime.invalid_events) == 1


async def test_the_handshake_checks_the_key_the_path_and_the_model(
    fake_openai: FakeOpenAI,
) -> None:
    with pytest.raises(trio_websocket.ConnectionRejected) as refused:
        async with trio_websocket.open_websocket_url(ws_url(fake_openai)):
            pass
    assert refused.value.status_code == 401
    assert b"invalid_api_key" in (refused.value.body or b"")
    bad_path = ws_url(fake_openai).replace("/realtime", "/elsewhere")
    with pytest.raises(trio_websocket.ConnectionRejected) as refused:
        async with trio_websocket.open_websocket_url(bad_path, extra_headers=auth(fake_openai)):
            pass
    assert refused.value.status_code == 404
    async with trio_websocket.open_websocket_url(
        ws_url(fake_openai, "gpt-4o-mini-tts"), extra_headers=auth(fake_openai)
    ) as ws:
        error = await next_event(ws)
        assert error["error"]["code"] == "model_not_found"
        with pytest.raises(trio_websocket.ConnectionClosed), trio.fail_after(5):
            await ws.get_message()


async def test_http_faults_apply_to_the_handshake(fake_openai: FakeOpenAI) -> None:
    fake_openai.faults.add("/v1/realtime", status=429)
    with pytest.raises(trio_websocket.ConnectionRejected) as refused:
        async with trio_websocket.open_websocket_url(
            ws_url(fake_openai), extra_headers=auth(fake_openai)
        ):
            pass
    assert refused.value.status_code == 429
    fake_openai.faults.delay("/v1/realtime", 0.3, times=1)
    started = trio.current_time()
    async with trio_websocket.open_websocket_url(
        ws_url(fake_openai), extra_headers=auth(fake_openai)
    ) as ws:
        await next_event(ws)
    assert trio.current_time() - started >= 0.3


@pytest.mark.parametrize(
    ("rule", "last", "status"),
    [
        ({"effect": "text_only"}, "response.done", "completed"),
        ({"effect": "incomplete"}, "response.done", "incomplete"),
        ({"effect": "error"}, "error", None),
        ({"effect": "error", "stage": "audio"}, "error", None),
        ({"effect": "transcript", "transcript": "otra cosa"}, "response.done", "completed"),
    ],
)
async def test_realtime_faults_shape_the_response(
    fake_openai: FakeOpenAI, rule: dict[str, Any], last: str, status: str | None
) -> None:
    fake_openai.realtime.faults.add(**rule)
    async with trio_websocket.open_websocket_url(
        ws_url(fake_openai), extra_headers=auth(fake_openai)
    ) as ws:
        await next_event(ws)
        await ws.send_message(response_create("Hola, Ana."))
        events = await until(ws, "response.done")
    assert events[-1]["type"] == last
    kinds = {e["type"] for e in events}
    audio = "response.output_audio.delta" in kinds
    if rule["effect"] == "text_only":
        assert not audio and "response.output_text.delta" in kinds
        assert events[-1]["response"]["output_modalities"] == ["text"]
    if status is not None:
        assert events[-1]["response"]["status"] == status
    if rule["effect"] == "transcript":
        (done,) = [e for e in events if e["type"] == "response.output_audio_transcript.done"]
        assert done["transcript"] == "otra cosa"
    if rule.get("stage") == "audio":
        assert audio  # the error came after the first delta
    assert not fake_openai.realtime.faults.rules, "each rule is used up once"


async def test_a_dropped_socket_closes_without_response_done(fake_openai: FakeOpenAI) -> None:
    fake_openai.realtime.faults.add("drop", stage="audio")
    async with trio_websocket.open_websocket_url(
        ws_url(fake_openai), extra_headers=auth(fake_openai)
    ) as ws:
        await next_event(ws)
        await ws.send_message(response_create("Hola, Ana."))
        kinds = []
        with pytest.raises(trio_websocket.ConnectionClosed) as closed:
            while True:
                kinds.append((await next_event(ws))["type"])
    assert "response.output_audio.delta" in kinds and "response.done" not in kinds
    assert closed.value.reason.code == 1011


async def test_a_rule_can_target_one_text(fake_openai: FakeOpenAI) -> None:
    fake_openai.realtime.faults.add("error", text="segunda")
    async with trio_websocket.open_websocket_url(
        ws_url(fake_openai), extra_headers=auth(fake_openai)
    ) as ws:
        await next_event(ws)
        await ws.send_message(response_create("La primera frase."))
        assert (await until(ws, "response.done"))[-1]["type"] == "response.done"
        await ws.send_message(response_create("La segunda frase."))
        assert (await until(ws, "response.done"))[-1]["type"] == "error"


async def test_the_control_api_adds_faults_and_transcripts_and_lists_sockets(
    fake_openai: FakeOpenAI,
) -> None:
    async with httpx.AsyncClient(base_url=fake_openai.base_url or "") as http:
        added = await http.post(
            "/__fake__/realtime/faults", json={"effect": "latency", "delay": 0.01, "times": "inf"}
        )
        assert added.status_code == 200 and added.json()["rule"]["times"] == "inf"
        bad = await http.post("/__fake__/realtime/faults", json={"effect": "explode"})
        assert bad.status_code == 400 and "effect" in bad.json()["error"]
        said = await http.post(
            "/__fake__/realtime/transcripts", json={"text": "Hola.", "transcript": "Hola, hola."}
        )
        assert said.status_code == 200
        async with trio_websocket.open_websocket_url(
            ws_url(fake_openai), extra_headers=auth(fake_openai)
        ) as ws:
            await next_event(ws)
            await ws.send_message(response_create("Hola."))
            events = await until(ws, "response.done")
        done = [e for e in events if e["type"] == "response.output_audio_transcript.done"]
        assert done[0]["transcript"] == "Hola, hola."
        listed = (await http.get("/__fake__/realtime/sessions")).json()["sessions"]
        assert listed[0]["readings"][0]["transcript"] == "Hola, hola."
        assert (await http.post("/__fake__/reset")).status_code == 200
    assert not fake_openai.realtime.sessions and not fake_openai.realtime.faults.rules


def test_fault_rules_are_checked_when_added() -> None:
    faults = RealtimeFaults()
    for bad in (
        {"effect": "explode"},
        {"effect": "text_only", "stage": "audio"},
        {"effect": "error", "stage": "session", "text": "x"},
        {"effect": "error", "times": 0},
        {"effect": "latency", "stage": "later"},
    ):
        with pytest.raises(ValueError):
            faults.add_from_json(bad)
    with pytest.raises(ValueError, match="unknown"):
        faults.add_from_json({"effect": "error", "when": "now"})
    assert not faults.rules
