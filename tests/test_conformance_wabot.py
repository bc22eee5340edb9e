"""wabot's own requests, recorded in a scripted session, against the vendors' full specs.

The session touches every kind of call wabot makes: conversation create, responses with a
context note, images and tools, function-call outputs, conversation items (handoff notes),
transcription, speech (the Realtime API's client events), text and voice sends, presence, chat
info, history and labels. Skips with a clear reason when ``../shared/vendor`` is not beside the
repository.
"""

from __future__ import annotations

import json
from pathlib import Path

from sandbox import payloads
from tests.harness import make_settings, open_bot, open_fakes, wait_until
from tests.test_conformance import VendorSpecs, check_calls_against_vendor_specs, specs  # noqa: F401

USER = "573001234567"
CHAT = f"{USER}@s.whatsapp.net"
OGG = b"OggS\x00\x02" + b"\x00" * 200


async def test_wabot_requests_conform_to_vendor_specs(
    tmp_path: Path,
    specs: VendorSpecs,  # noqa: F811
) -> None:
    operator = "573005550000@s.whatsapp.net"
    async with open_fakes() as fakes:
        fakes.whapi.set_chat(CHAT, name="Ana", labels=[{"id": "1", "name": "New customer"}])
        steps = [
            [
                {
                    "type": "function_call",
                    "call_id": "c1",
                    "name": "get_conversation_context",
                    "arguments": json.dumps({"count": 3}),
                }
            ],
            "Con gusto.",
            "Te escucho.",
            [
                {
                    "type": "function_call",
                    "call_id": "c2",
                    "name": "escalate_to_human",
                    "arguments": json.dumps({"reason": "pago", "summary": "quiere pagar"}),
                }
            ],
            "Te paso con el equipo.",
        ]
        fakes.openai.responder = lambda request: steps.pop(0) if steps else "ok"
        voice = fakes.whapi.add_media("v1", OGG, "audio/ogg; codecs=opus")
        image = fakes.whapi.add_media("i1", b"\x89PNG", "image/jpeg")
        settings = make_settings(fakes, tmp_path, escalation_label_id="3", operator_chat=operator)
        async with open_bot(fakes, settings) as bot:
            await bot.post(
                payloads.webhook([payloads.image_message(USER, link=image, caption="¿y esto?")])
            )
            await fakes.whapi.wait_sent(1, to=CHAT)
            await bot.post(payloads.webhook([payloads.voice_message(USER, link=voice)]))
            await fakes.whapi.wait_sent(2, to=CHAT)
            await bot.post(payloads.webhook([payloads.text_message(USER, "quiero pagar")]))
            await fakes.whapi.wait_sent(3, to=CHAT)
            await bot.post(payloads.webhook([payloads.agent_message(USER, "Hola, soy Carlos")]))
            await wait_until(
                lambda: any(
                    c.path.endswith("/items") and c.method == "POST" for c in fakes.openai.calls
                )
            )
        paths = {c.path for c in fakes.openai.calls} | {c.path for c in fakes.whapi.calls}
        for expected in (
            "/v1/conversations",
            "/v1/responses",
            "/v1/audio/transcriptions",
            "/messages/text",
            "/messages/voice",
            f"/chats/{CHAT}",
            f"/messages/list/{CHAT}",
            f"/labels/3/{CHAT}",
        ):
            assert expected in paths, f"the session did not exercise {expected}"
        assert not fakes.whapi.invalid_calls and not fakes.openai.invalid_calls
        problems = check_calls_against_vendor_specs(
            fakes.whapi.calls, fakes.openai.calls, specs=specs
        )
        sockets = fakes.openai.realtime.sessions
        kinds = {event["type"] for socket in sockets for event in socket.events}
        assert kinds == {"session.update", "response.create"}, "the session spoke no voice reply"
        assert not fakes.openai.realtime.invalid_events
        for socket in sockets:
            for event in socket.events:
                problems.extend(specs.check_realtime_event(event))
        assert problems == []
