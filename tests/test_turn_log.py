"""The INFO log tells a turn's story: the message received, the turn's start and its end.

Text stays out of the log unless ``WABOT_LOG_MESSAGE_TEXT`` allows it; the turn's end line
carries the outcome, duration, model time, tools and parts sent, and a failed turn its reason.
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path

import pytest

from sandbox import payloads
from tests.harness import make_settings, open_bot, open_fakes

USER = "573007700001"
CHAT = f"{USER}@s.whatsapp.net"


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]


async def test_a_turn_is_three_info_lines_without_the_text(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with open_fakes() as fakes, open_bot(fakes, make_settings(fakes, tmp_path)) as bot:
        await bot.post(payloads.webhook([payloads.text_message(USER, "mi clave secreta")]))
        await fakes.whapi.wait_sent(1, to=CHAT)
        fakes.openai.faults.add("/v1/responses$", status=500, times=math.inf)
        await bot.post(payloads.webhook([payloads.text_message(USER, "otra vez")]))
        await fakes.whapi.wait_sent(2, to=CHAT, timeout=20)
    lines = messages(caplog)
    received = [
        line for line in lines if re.match(rf"message \S+ from {USER}: text, 16 chars$", line)
    ]
    assert len(received) == 1, lines
    assert any(
        re.match(rf"user {USER}: turn {USER}-1 starts: 1 message\(s\), 16 chars", x) for x in lines
    )
    ended = [x for x in lines if x.startswith(f"user {USER}: turn {USER}-1 replied in ")]
    assert ended and "parts sent: 1" in ended[0] and "tools: none" in ended[0], lines
    failed = [x for x in lines if x.startswith(f"user {USER}: turn {USER}-2 fallback in ")]
    assert failed and "500" in failed[0], lines
    assert not any("mi clave secreta" in line for line in lines)


async def test_message_text_is_logged_only_when_the_setting_allows_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with open_fakes() as fakes:
        settings = make_settings(fakes, tmp_path, log_message_text=True)
        async with open_bot(fakes, settings) as bot:
            await bot.post(payloads.webhook([payloads.text_message(USER, "hola, ¿precio?")]))
            await fakes.whapi.wait_sent(1, to=CHAT)
    assert any(line.endswith("chars: 'hola, ¿precio?'") for line in messages(caplog))
