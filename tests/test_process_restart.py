"""Crash durability end to end (issue 3): acknowledged messages survive a SIGKILL.

A real process acknowledges a customer's messages (they are in the journal) and is killed
with SIGKILL before its buffer window elapses; the next process on the same data directory
replays them and the customer gets exactly one answer that covers all of them.
"""

from __future__ import annotations

import signal
from pathlib import Path

import trio

from sandbox import payloads
from tests.harness import open_fakes
from tests.process import open_bot_process, user_text

USER = "573001234567"
OTHER = "573007654321"


async def test_sigkill_before_the_buffer_flushed_then_one_answer_after_restart(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    async with open_fakes() as fakes:
        async with open_bot_process(fakes, data, buffer_seconds=30, max_wait_seconds=60) as bot:
            for user, text in ((USER, "hola"), (USER, "quiero dos"), (OTHER, "buenas")):
                response = await bot.post(payloads.webhook([payloads.text_message(user, text)]))
                assert response.status_code == 200
            bot.kill()
            assert await bot.wait_exit(5) == -signal.SIGKILL
        assert not fakes.whapi.sent

        async with open_bot_process(fakes, data, buffer_seconds=0.2) as bot:
            await fakes.whapi.wait_sent(1, to=USER, timeout=10)
            await fakes.whapi.wait_sent(1, to=OTHER, timeout=10)
            await trio.sleep(0.8)  # a duplicate answer would arrive within this
            assert len(fakes.whapi.sent_to(USER)) == 1
            assert len(fakes.whapi.sent_to(OTHER)) == 1
            texts = sorted(user_text(c) for c in fakes.openai.calls_to("/v1/responses$", "POST"))
            assert texts == ["buenas", "hola\nquiero dos"]
            with trio.fail_after(5):  # the turn settles its messages just after the send
                while (await bot.get("/health")).json()["inboxPending"]:
                    await trio.sleep(0.05)
            bot.terminate()
            assert await bot.wait_exit(8) == 0, bot.logs[-3000:]
        assert "replaying unanswered messages for 2 users" in bot.logs
