"""Issue 4 end to end: voice, images, context, tools, handoff, reset, failure paths.

Everything runs through the real HTTP path: webhooks into the bot, the bot against the fake
Whapi and OpenAI servers; assertions read what the fakes recorded.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import trio

from sandbox import payloads
from sandbox.openai import ResponseRequest
from tests.harness import Fakes, make_settings, open_bot, open_fakes, wait_until

USER = "573001234567"
CHAT = f"{USER}@s.whatsapp.net"
OGG = b"OggS\x00\x02" + b"\x00" * 200


def responses(fakes: Fakes) -> list[Any]:
    return [c for c in fakes.openai.calls if c.method == "POST" and c.path == "/v1/responses"]


def items_of(call: Any, role: str) -> list[Any]:
    return [i for i in call.json["input"] if i.get("role") == role]


def user_text(call: Any) -> str:
    return "".join(
        part["text"]
        for item in items_of(call, "user")
        for part in item["content"]
        if part["type"] == "input_text"
    )


def developer_notes(call: Any) -> list[str]:
    return [item["content"] for item in items_of(call, "developer")]


async def test_voice_note_is_transcribed_and_answered_in_voice(tmp_path: Path) -> None:
    async with open_fakes() as fakes:
        link = fakes.whapi.add_media("voice-1", OGG, "audio/ogg; codecs=opus")
        fakes.openai.transcripts[hashlib.sha256(OGG).hexdigest()] = "quiero reservar el sábado"
        settings = make_settings(fakes, tmp_path)
        async with open_bot(fakes, settings) as bot:
            await bot.post(payloads.webhook([payloads.voice_message(USER, link=link)]))
            await fakes.whapi.wait_sent(1, to=CHAT)
        transcription = [c for c in fakes.openai.calls if c.path == "/v1/audio/transcriptions"]
        assert len(transcription) == 1
        form = transcription[0].form
        assert form["model"] == "gpt-transcribe"
        assert form["language"] == "es"
        assert form["file"]["filename"].endswith(".ogg")
        assert "[nota de voz] quiero reservar el sábado" in user_text(responses(fakes)[0])
        sent = fakes.whapi.sent_to(CHAT)
        assert [m.type for m in sent] == ["voice"]
        assert sent[0].media.startswith("data:audio/ogg;base64,")
        assert (CHAT, "recording") in fakes.whapi.presences_put
        (socket,) = fakes.openai.realtime.sessions  # the Realtime API spoke the answer
        assert socket.model == "gpt-realtime-2.1-mini" and socket.closed
        assert not fakes.openai.realtime.invalid_events
        assert not fakes.whapi.invalid_calls and not fakes.openai.invalid_calls


async def test_prices_force_a_text_reply_to_a_voice_note(tmp_path: Path) -> None:
    async with open_fakes() as fakes:
        link = fakes.whapi.add_media("voice-2", OGG, "audio/ogg; codecs=opus")
        fakes.openai.responder = lambda request: "Son 3 noches por $750.000 COP."
        async with open_bot(fakes, make_settings(fakes, tmp_path)) as bot:
            await bot.post(payloads.webhook([payloads.voice_message(USER, link=link)]))
            await fakes.whapi.wait_sent(1, to=CHAT)
        assert [m.type for m in fakes.whapi.sent_to(CHAT)] == ["text"]
        assert not [c for c in fakes.openai.calls if c.path == "/v1/audio/speech"]
        assert not fakes.openai.realtime.sessions


async def test_image_goes_to_the_model_with_its_caption(tmp_path: Path) -> None:
    async with open_fakes() as fakes:
        link = fakes.whapi.add_media("img-1", b"\x89PNG....", "image/png")
        async with open_bot(fakes, make_settings(fakes, tmp_path)) as bot:
            message = payloads.image_message(USER, link=link, caption="¿Este apartamento?")
            await bot.post(payloads.webhook([message]))
            await fakes.whapi.wait_sent(1, to=CHAT)
        parts = items_of(responses(fakes)[0], "user")[0]["content"]
        assert {"type": "input_image", "image_url": link, "detail": "auto"} in parts
        assert "¿Este apartamento?" in user_text(responses(fakes)[0])


async def test_image_inline_when_links_are_unreachable(tmp_path: Path) -> None:
    async with open_fakes() as fakes:
        link = fakes.whapi.add_media("img-2", b"\x89PNG-bytes", "image/png")
        settings = make_settings(fakes, tmp_path, image_inline=True)
        async with open_bot(fakes, settings) as bot:
            image = payloads.image_message(USER, link=link, mime_type="image/png")
            await bot.post(payloads.webhook([image]))
            await fakes.whapi.wait_sent(1, to=CHAT)
        parts = items_of(responses(fakes)[0], "user")[0]["content"]
        images = [p["image_url"] for p in parts if p["type"] == "input_image"]
        assert images and images[0].startswith("data:image/png;base64,")


async def test_context_block_on_first_turn_and_on_label_change(tmp_path: Path) -> None:
    async with open_fakes() as fakes:
        fakes.whapi.set_chat(
            CHAT, name="Ana Gómez", labels=[{"id": "9", "name": "VIP", "color": "gold"}]
        )
        settings = make_settings(fakes, tmp_path, chat_info_ttl_seconds=0.0)
        async with open_bot(fakes, settings) as bot:
            for n, text in enumerate(("hola", "sigo"), 1):
                await bot.post(payloads.webhook([payloads.text_message(USER, text)]))
                await fakes.whapi.wait_sent(n, to=CHAT)
            fakes.whapi.set_chat(
                CHAT, name="Ana Gómez", labels=[{"id": "4", "name": "Paid", "color": "limegreen"}]
            )
            await bot.post(payloads.webhook([payloads.text_message(USER, "ya pagué")]))
            await fakes.whapi.wait_sent(3, to=CHAT)
        first, second, third = (developer_notes(c) for c in responses(fakes))
        assert len(first) == 1 and "Ana Gómez" in first[0] and "VIP" in first[0]
        assert "America/Bogota" in first[0] and "+573001234567" in first[0]
        assert second == []
        assert len(third) == 1 and "Paid" in third[0]
        # The record keeps the latest name and labels (the final snapshot is on disk).
        record = json.loads((tmp_path / "threads-data.json").read_text())[USER]
        assert record["name"] == "Ana Gómez" and record["labels"] == ["Paid"]


def scripted(*steps: Any) -> Any:
    """A responder that plays ``steps`` in order (each a string or a list of output items)."""
    queue = list(steps)

    def responder(request: ResponseRequest) -> Any:
        return queue.pop(0) if queue else "fin"

    return responder


def call(name: str, arguments: dict[str, Any], call_id: str) -> list[dict[str, Any]]:
    return [
        {
            "type": "function_call",
            "call_id": call_id,
            "name": name,
            "arguments": json.dumps(arguments),
        }
    ]


async def test_multi_round_tool_loop(tmp_path: Path) -> None:
    async with open_fakes() as fakes:
        fakes.whapi.add_history(
            CHAT,
            {
                "id": "H1-AAAA",
                "from_me": False,
                "type": "text",
                "timestamp": 1_700_000_000,
                "text": {"body": "mensaje viejo"},
            },
        )
        fakes.openai.responder = scripted(
            call("get_conversation_context", {"count": 5}, "call_1"),
            call("get_conversation_context", {"count": 2}, "call_2"),
            "Ya revisé tu historial.",
        )
        async with open_bot(fakes, make_settings(fakes, tmp_path)) as bot:
            await bot.post(payloads.webhook([payloads.text_message(USER, "¿qué te dije antes?")]))
            await fakes.whapi.wait_sent(1, to=CHAT)
        calls = responses(fakes)
        assert len(calls) == 3
        outputs = [i for i in calls[1].json["input"] if i.get("type") == "function_call_output"]
        assert outputs[0]["call_id"] == "call_1" and "mensaje viejo" in outputs[0]["output"]
        assert fakes.whapi.sent_to(CHAT)[0].body == "Ya revisé tu historial."
        tools = {t["name"] for t in calls[0].json["tools"]}
        assert {"escalate_to_human", "get_conversation_context"} <= tools


async def test_tool_rounds_are_capped(tmp_path: Path) -> None:
    async with open_fakes() as fakes:
        fakes.openai.responder = lambda request: (
            "respuesta final"
            if not request.tools
            else call("get_conversation_context", {}, f"c{len(request.prior_items)}")
        )
        settings = make_settings(fakes, tmp_path, tool_rounds=2)
        async with open_bot(fakes, settings) as bot:
            await bot.post(payloads.webhook([payloads.text_message(USER, "hola")]))
            await fakes.whapi.wait_sent(1, to=CHAT)
        calls = responses(fakes)
        assert len(calls) == 3  # two rounds of tools, then one call without tools
        assert "tools" not in calls[-1].json
        assert fakes.whapi.sent_to(CHAT)[0].body == "respuesta final"


async def test_escalation_labels_notifies_and_pauses(tmp_path: Path) -> None:
    operator = "573005550000@s.whatsapp.net"
    async with open_fakes() as fakes:
        fakes.whapi.set_chat(CHAT, name="Ana Gómez")
        fakes.openai.responder = scripted(
            call(
                "escalate_to_human", {"reason": "pago", "summary": "Quiere pagar la reserva"}, "e1"
            ),
            "Te comunico con una persona del equipo.",
        )
        settings = make_settings(fakes, tmp_path, escalation_label_id="3", operator_chat=operator)
        async with open_bot(fakes, settings) as bot:
            await bot.post(payloads.webhook([payloads.text_message(USER, "quiero pagar")]))
            await fakes.whapi.wait_sent(1, to=CHAT)
            notice = fakes.whapi.sent_to(operator)
            assert len(notice) == 1
            assert "Ana Gómez" in notice[0].body and "+573001234567" in notice[0].body
            assert "Quiere pagar la reserva" in notice[0].body
            assert any(c.path == f"/labels/3/{CHAT}" and c.status == 200 for c in fakes.whapi.calls)
            # Paused: the next customer message gets no answer from the bot.
            await bot.post(payloads.webhook([payloads.text_message(USER, "¿hola?")]))
            await trio.sleep(0.6)
            assert len(fakes.whapi.sent_to(CHAT)) == 1
            assert bot.service.store.get(USER).paused_until is not None


async def test_escalation_failure_is_reported_honestly(tmp_path: Path) -> None:
    operator = "573005550000@s.whatsapp.net"
    async with open_fakes() as fakes:
        fakes.openai.responder = scripted(
            call("escalate_to_human", {"reason": "queja", "summary": "Reclamo"}, "e1"),
            "No pude avisar al equipo; escríbenos al correo.",
        )
        fakes.whapi.faults.add("^/messages/text$", status=400, times=1)
        settings = make_settings(fakes, tmp_path, operator_chat=operator)
        async with open_bot(fakes, settings) as bot:
            await bot.post(payloads.webhook([payloads.text_message(USER, "tengo una queja")]))
            await fakes.whapi.wait_sent(1, to=CHAT)
            output = next(
                i["output"]
                for i in responses(fakes)[1].json["input"]
                if i.get("type") == "function_call_output"
            )
            result = json.loads(output)
            assert result["operator_notified"] is False and result["bot_paused"] is False
            assert result["problems"]
            assert bot.service.store.get(USER).paused_until is None


async def test_agent_message_pauses_the_bot_and_reaches_the_conversation(tmp_path: Path) -> None:
    async with open_fakes() as fakes, open_bot(fakes, make_settings(fakes, tmp_path)) as bot:
        await bot.post(payloads.webhook([payloads.text_message(USER, "hola")]))
        await fakes.whapi.wait_sent(1, to=CHAT)
        agent = payloads.agent_message(USER, "Hola Ana, soy Carlos. Te ayudo yo.")
        await bot.post(payloads.webhook([agent]))
        await wait_until(lambda: bot.service.store.get(USER).paused_until is not None)
        before = bot.service.store.get(USER).last_activity
        await bot.post(payloads.webhook([payloads.text_message(USER, "gracias Carlos")]))
        await trio.sleep(0.6)
        assert len(fakes.whapi.sent_to(CHAT)) == 1  # the bot stayed out
        # ...but the customer's activity is recorded (retention must not purge them).
        assert bot.service.store.get(USER).last_activity > before
        conversation = bot.service.store.get(USER).conversation_id
        await wait_until(lambda: len(fakes.openai.conversations[conversation]) >= 4)
        texts = json.dumps(fakes.openai.conversations[conversation], ensure_ascii=False)
        assert "soy Carlos" in texts and "gracias Carlos" in texts


async def test_our_own_echo_never_pauses(tmp_path: Path) -> None:
    async with open_fakes() as fakes, open_bot(fakes, make_settings(fakes, tmp_path)) as bot:
        for n in (1, 2):
            await bot.post(payloads.webhook([payloads.text_message(USER, f"mensaje {n}")]))
            await fakes.whapi.wait_sent(n, to=CHAT)
            await trio.sleep(0.3)  # the echo of our reply comes back meanwhile
        assert bot.service.store.get(USER).paused_until is None


async def test_reset_keyword_starts_a_fresh_conversation(tmp_path: Path) -> None:
    async with open_fakes() as fakes:
        async with open_bot(fakes, make_settings(fakes, tmp_path)) as bot:
            await bot.post(payloads.webhook([payloads.text_message(USER, "hola")]))
            await fakes.whapi.wait_sent(1, to=CHAT)
            first = bot.service.store.get(USER).conversation_id
            await bot.post(payloads.webhook([payloads.text_message(USER, "/reset")]))
            await fakes.whapi.wait_sent(2, to=CHAT)
            assert fakes.whapi.sent_to(CHAT)[1].body == bot.service.settings.reset_reply
            await bot.post(payloads.webhook([payloads.text_message(USER, "de nuevo")]))
            await fakes.whapi.wait_sent(3, to=CHAT)
            second = bot.service.store.get(USER).conversation_id
        assert first and second and first != second
        assert responses(fakes)[-1].json["conversation"] == second


async def test_failure_paths_still_answer(tmp_path: Path) -> None:
    async with open_fakes() as fakes:
        settings = make_settings(fakes, tmp_path, tools_module="tests.fixtures.broken_tools")
        fakes.openai.responder = lambda request: (
            call("check_availability", {"start": "2026-12-01"}, "b1")
            if request.last_user_text and "disponibilidad" in request.last_user_text
            else f"ok: {request.last_user_text or 'tool output received'}"
        )
        async with open_bot(fakes, settings) as bot:
            # Media download 404: the voice note's link and media id are unknown to Whapi.
            missing = payloads.voice_message(USER, link=f"{fakes.whapi_url}/files/nope")
            await bot.post(payloads.webhook([missing]))
            await fakes.whapi.wait_sent(1, to=CHAT)
            assert "no se pudo escuchar" in user_text(responses(fakes)[-1])
            # Transcription 500 on every attempt.
            link = fakes.whapi.add_media("voice-3", OGG, "audio/ogg; codecs=opus")
            fakes.openai.faults.add("/v1/audio/transcriptions", status=500, times=10)
            await bot.post(payloads.webhook([payloads.voice_message(USER, link=link)]))
            await fakes.whapi.wait_sent(2, to=CHAT)
            assert "no se pudo escuchar" in user_text(responses(fakes)[-1])
            # A tool that raises: the model gets the error as the tool output and answers.
            await bot.post(payloads.webhook([payloads.text_message(USER, "¿hay disponibilidad?")]))
            await fakes.whapi.wait_sent(3, to=CHAT)
            output = next(
                i["output"]
                for i in responses(fakes)[-1].json["input"]
                if i.get("type") == "function_call_output"
            )
            assert "the booking system is down" in output
            replied = bot.service.telemetry.turns.labels("replied")
            await wait_until(lambda: replied._value.get() == 3)


async def test_validator_asks_for_one_correction(tmp_path: Path) -> None:
    async with open_fakes() as fakes:
        fakes.openai.responder = scripted("Cuesta 200.", "Cuesta 250.", "Sigue costando 200.")
        settings = make_settings(fakes, tmp_path, validator_module="tests.fixtures.price_validator")
        async with open_bot(fakes, settings) as bot:
            await bot.post(payloads.webhook([payloads.text_message(USER, "¿precio?")]))
            await fakes.whapi.wait_sent(1, to=CHAT)
            assert fakes.whapi.sent_to(CHAT)[0].body == "Cuesta 250."
            # Within the cool-down no second correction is asked for.
            await bot.post(payloads.webhook([payloads.text_message(USER, "¿seguro?")]))
            await fakes.whapi.wait_sent(2, to=CHAT)
            assert fakes.whapi.sent_to(CHAT)[1].body == "Sigue costando 200."
            assert len(responses(fakes)) == 3


async def test_voice_reply_served_from_public_url_then_expires(tmp_path: Path) -> None:
    async with open_fakes() as fakes:
        link = fakes.whapi.add_media("voice-9", OGG, "audio/ogg; codecs=opus")
        settings = make_settings(
            fakes, tmp_path, public_url="https://bot.example.com", audio_ttl_seconds=2.0
        )
        async with open_bot(fakes, settings) as bot:
            await bot.post(payloads.webhook([payloads.voice_message(USER, link=link)]))
            await fakes.whapi.wait_sent(1, to=CHAT)
            media = fakes.whapi.sent_to(CHAT)[0].media
            assert media.startswith("https://bot.example.com/audio/") and media.endswith(".ogg")
            name = media.rsplit("/", 1)[1]
            served = await bot.http.get(f"{bot.url}/audio/{name}")
            assert served.status_code == 200 and served.content.startswith(b"OggS")
            assert served.headers["content-type"].startswith("audio/ogg")
            for probe in ("../threads-data.json", "%2e%2e%2fthreads-data.json", "x" * 30 + ".ogg"):
                assert (await bot.http.get(f"{bot.url}/audio/{probe}")).status_code == 404
            await wait_until(lambda: not list(settings.tmp_dir.glob("*.ogg")), timeout=5)
            assert (await bot.http.get(f"{bot.url}/audio/{name}")).status_code == 404


async def test_long_silence_starts_a_fresh_conversation_with_a_seed(tmp_path: Path) -> None:
    async with open_fakes() as fakes:
        settings = make_settings(fakes, tmp_path, session_expiry_seconds=0.5)
        async with open_bot(fakes, settings) as bot:
            await bot.post(payloads.webhook([payloads.text_message(USER, "hola")]))
            await fakes.whapi.wait_sent(1, to=CHAT)
            first = bot.service.store.get(USER).conversation_id
            await trio.sleep(0.8)
            await bot.post(payloads.webhook([payloads.text_message(USER, "volví")]))
            await fakes.whapi.wait_sent(2, to=CHAT)
            second = bot.service.store.get(USER).conversation_id
        assert first != second
        notes = developer_notes(responses(fakes)[-1])
        assert notes and "La conversación anterior terminó" in notes[0]


async def test_ignored_chats_get_no_answer(tmp_path: Path) -> None:
    async with open_fakes() as fakes:
        settings = make_settings(fakes, tmp_path, ignored_chats=frozenset({USER}))
        async with open_bot(fakes, settings) as bot:
            await bot.post(payloads.webhook([payloads.text_message(USER, "hola")]))
            await wait_until(lambda: bot.service.store.stats().pending == 0)
            await trio.sleep(0.4)
            assert not fakes.whapi.sent and not responses(fakes)
