"""A turn cut by kill -9 is resumed by the next process, not asked and answered again.

Before its model call a turn stores its intent (messages, conversation, input) in the
customer's record. The process is killed while the model is thinking, or after the model
answered and one reply part went out; the next process finds the intent, reads the
conversation for the answer the dead one was given, and sends only the parts the chat's
history does not show. The fakes live in the test process, so they see both processes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from sandbox import payloads
from sandbox.openai import ResponseRequest
from tests.harness import open_fakes
from tests.process import open_bot_process

USER = "573007700001"
CHAT = f"{USER}@s.whatsapp.net"
TIMINGS = {"buffer_seconds": 0.1, "max_wait_seconds": 1.0}


def creates_with(fakes: Any, text: str) -> list[Any]:
    """The ``responses.create`` calls whose input carried ``text``."""
    return [
        c
        for c in fakes.openai.calls
        if c.method == "POST" and c.path == "/v1/responses" and text in str(c.json.get("input"))
    ]


def conversation_inputs(fakes: Any, text: str) -> int:
    """How many user items in any conversation carry ``text``."""
    return sum(
        1
        for items in fakes.openai.conversations.values()
        for item in items
        if item.get("role") == "user" and text in str(item.get("content"))
    )


async def test_killed_while_the_model_thinks_the_next_process_recovers_its_answer(
    tmp_path: Path,
) -> None:
    thinking = trio.Event()

    async def slow(request: ResponseRequest) -> str:
        thinking.set()
        await trio.sleep(1.0)
        return f"Respuesta a {request.last_user_text}"

    async with open_fakes() as fakes:
        fakes.openai.responder = slow
        async with open_bot_process(fakes, tmp_path / "data", **TIMINGS) as bot:
            response = await bot.post(payloads.webhook([payloads.text_message(USER, "precio?")]))
            assert response.status_code == 200
            with trio.fail_after(10):
                await thinking.wait()
            bot.kill()
            assert await bot.wait_exit(10) == -9
        await trio.sleep(1.5)  # the abandoned response completes on the fake's side
        async with open_bot_process(fakes, tmp_path / "data", **TIMINGS) as bot:
            await fakes.whapi.wait_sent(1, to=CHAT, timeout=15)
            await trio.sleep(0.5)
            assert "resuming turn" in bot.logs
        sent = [m.body for m in fakes.whapi.sent_to(CHAT)]
        assert sent == ["Respuesta a precio?"]
        assert conversation_inputs(fakes, "precio?") == 1
        # The answer was recovered from the conversation: one create, completed server-side.
        assert len(creates_with(fakes, "precio?")) == 1


async def test_killed_between_two_reply_parts_the_next_sends_only_the_missing_part(
    tmp_path: Path,
) -> None:
    async with open_fakes() as fakes:
        fakes.openai.responder = lambda request: "Primera parte.\n\nSegunda parte."
        # The first part goes out; the second one's send is held by the fake (no effect, no
        # answer), so the process dies with one part out.
        fakes.whapi.faults.delay(r"^/messages/text$", 0.0, method="POST", times=1)
        fakes.whapi.faults.add(r"^/messages/text$", method="POST", drop=True, times=1)
        async with open_bot_process(fakes, tmp_path / "data", **TIMINGS) as bot:
            await bot.post(payloads.webhook([payloads.text_message(USER, "hola")]))
            await fakes.whapi.wait_sent(1, to=CHAT, timeout=10)
            await trio.sleep(0.3)  # the second part is now held by the fake
            bot.kill()
            assert await bot.wait_exit(10) == -9
        fakes.whapi.faults.clear()
        async with open_bot_process(fakes, tmp_path / "data", **TIMINGS) as bot:
            await fakes.whapi.wait_sent(2, to=CHAT, timeout=15)
            await trio.sleep(0.5)
        sent = [m.body for m in fakes.whapi.sent_to(CHAT)]
        assert sent == ["Primera parte.", "Segunda parte."]
        assert conversation_inputs(fakes, "hola") == 1
        assert len(creates_with(fakes, "hola")) == 1
