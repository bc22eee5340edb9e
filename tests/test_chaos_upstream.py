"""Upstream faults injected in the fakes: OpenAI and Whapi failing, slow, or half-succeeding.

Expected everywhere: bounded retries with backoff and jitter, ``Retry-After`` honoured, one
fallback message when a turn finally fails (never silence, never a raw error), no duplicate
sends or turns (the safe retries look before they repeat an ambiguous call), no stuck actor
(the next message is answered normally), and one user's slow upstream does not slow others.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from actors.upstream.retry import RetryPolicy
from sandbox import payloads
from sandbox.openai import ResponseRequest, default_responder
from tests.chaos_helpers import one_answer_per_turn, responses_calls, roles, scale
from tests.harness import Bot, Fakes, make_settings, open_bot, open_fakes, wait_until

USER = "573003300001"
CHAT = f"{USER}@s.whatsapp.net"
RESPONSES = r"^/v1/responses$"
SEND = r"^/messages/text$"


@asynccontextmanager
async def bot_with_faults(tmp_path: Path, **overrides: Any) -> AsyncIterator[tuple[Fakes, Bot]]:
    values: dict[str, Any] = {
        "openai_timeout_seconds": 1.0,
        "whapi_timeout_seconds": 1.0,
        "openai_max_attempts": 3,
        "whapi_max_attempts": 3,
        "turn_timeout_seconds": 15.0,
    }
    values.update(overrides)
    async with (
        open_fakes() as fakes,
        open_bot(fakes, make_settings(fakes, tmp_path, **values)) as bot,
    ):
        yield fakes, bot


async def say(bot: Bot, text: str, user: str = USER) -> None:
    assert (
        await bot.post(payloads.webhook([payloads.text_message(user, text)]))
    ).status_code == 200


async def settled(bot: Bot) -> None:
    await wait_until(lambda: bot.service.store.stats().pending == 0, timeout=15)
    await wait_until(lambda: all(c.phase == "idle" for c in bot.service.supervisor.cells()))


def only_conversation(fakes: Fakes) -> list[dict[str, Any]]:
    [items] = fakes.openai.conversations.values()
    return items


async def still_answers(fakes: Fakes, bot: Bot, user: str = USER) -> None:
    """No stuck actor: with the faults gone, the next message gets a normal answer."""
    fakes.openai.faults.clear()
    fakes.whapi.faults.clear()
    before = len(fakes.whapi.sent_to(user))
    await say(bot, "¿sigues ahí?", user)
    sent = await fakes.whapi.wait_sent(before + 1, to=user, timeout=10)
    assert "sigues ahí" in (sent[-1].body or "")


# -- OpenAI ------------------------------------------------------------------------------------


async def test_chaos_openai_429_honours_retry_after(tmp_path: Path) -> None:
    async with bot_with_faults(tmp_path) as (fakes, bot):
        fakes.openai.faults.add(RESPONSES, status=429, retry_after=1, times=1)
        await say(bot, "hola")
        [reply] = await fakes.whapi.wait_sent(1, to=CHAT)
        first, second = responses_calls(fakes)
        assert first.status == 429 and second.status == 200
        assert second.at - first.at >= 0.95, "retried before Retry-After"
        assert reply.body == "Recibido: hola"


async def test_chaos_openai_500s_are_bounded_then_one_fallback(tmp_path: Path) -> None:
    async with bot_with_faults(tmp_path) as (fakes, bot):
        fakes.openai.faults.add(RESPONSES, status=500, times=float("inf"))
        started = trio.current_time()
        await say(bot, "hola")
        [reply] = await fakes.whapi.wait_sent(1, to=CHAT)
        await settled(bot)
        calls = responses_calls(fakes)
        assert len(calls) == 3, "attempts must be bounded by WABOT_OPENAI_MAX_ATTEMPTS"
        gaps = [b.at - a.at for a, b in itertools.pairwise(calls)]
        assert all(gap < 1.0 for gap in gaps), gaps  # backoff capped (retry_max 0.05 s + look)
        assert reply.body == bot.service.settings.fallback_text
        assert trio.current_time() - started < 5
        await trio.sleep(0.3)
        assert len(fakes.whapi.sent_to(CHAT)) == 1, "exactly one fallback"
        await still_answers(fakes, bot)


async def test_chaos_openai_timeout_gives_one_answer(tmp_path: Path) -> None:
    """The server takes longer than the client waits; the retry must not double the turn."""
    async with bot_with_faults(tmp_path) as (fakes, bot):
        fakes.openai.faults.delay(RESPONSES, 1.6, times=1)
        await say(bot, "hola")
        [reply] = await fakes.whapi.wait_sent(1, to=CHAT)
        await settled(bot)
        await trio.sleep(1.0)  # let the abandoned request finish server-side, if it does
        assert "hola" in (reply.body or "")
        assert len(fakes.whapi.sent_to(CHAT)) == 1
        items = only_conversation(fakes)
        assert one_answer_per_turn(items), roles(items)
        await still_answers(fakes, bot)
        assert one_answer_per_turn(only_conversation(fakes)), roles(only_conversation(fakes))


async def test_chaos_openai_after_processing_is_not_repeated(tmp_path: Path) -> None:
    """OpenAI did the turn but the client saw a 500: the safe retry recovers that answer."""
    async with bot_with_faults(tmp_path) as (fakes, bot):
        fakes.openai.faults.add(RESPONSES, status=500, after_processing=True, times=1)
        await say(bot, "hola")
        [reply] = await fakes.whapi.wait_sent(1, to=CHAT)
        await settled(bot)
        assert reply.body == "Recibido: hola"
        assert fakes.openai.responses_created == 1, "the turn ran twice on the conversation"
        assert roles(only_conversation(fakes)) == ["user", "assistant"]
        await still_answers(fakes, bot)
        assert one_answer_per_turn(only_conversation(fakes))


async def test_chaos_openai_dropped_connection_after_processing(tmp_path: Path) -> None:
    async with bot_with_faults(tmp_path) as (fakes, bot):
        fakes.openai.faults.add(RESPONSES, drop=True, after_processing=True, times=1)
        await say(bot, "hola")
        [reply] = await fakes.whapi.wait_sent(1, to=CHAT)
        await settled(bot)
        assert reply.body == "Recibido: hola"
        assert fakes.openai.responses_created == 1
        assert one_answer_per_turn(only_conversation(fakes))


async def test_chaos_openai_conversation_locked_is_retried(tmp_path: Path) -> None:
    locked = {
        "error": {
            "message": "Another response is already in progress for this conversation.",
            "type": "invalid_request_error",
            "param": "conversation",
            "code": "conversation_locked",
        }
    }
    async with bot_with_faults(tmp_path) as (fakes, bot):
        fakes.openai.faults.add(RESPONSES, status=400, body=locked, times=2)
        await say(bot, "hola")
        [reply] = await fakes.whapi.wait_sent(1, to=CHAT)
        await settled(bot)
        assert reply.body == "Recibido: hola"
        assert len(responses_calls(fakes)) == 3
        assert roles(only_conversation(fakes)) == ["user", "assistant"]


async def test_chaos_openai_conversation_create_fails_then_fallback(tmp_path: Path) -> None:
    async with bot_with_faults(tmp_path) as (fakes, bot):
        fakes.openai.faults.add(r"^/v1/conversations$", status=503, times=float("inf"))
        await say(bot, "hola")
        [reply] = await fakes.whapi.wait_sent(1, to=CHAT)
        await settled(bot)
        assert reply.body == bot.service.settings.fallback_text
        assert len(fakes.openai.calls_to(r"^/v1/conversations$", "POST")) == 3
        await still_answers(fakes, bot)


# -- Whapi -------------------------------------------------------------------------------------


async def test_chaos_whapi_send_429_honours_retry_after(tmp_path: Path) -> None:
    async with bot_with_faults(tmp_path) as (fakes, bot):
        fakes.whapi.faults.add(SEND, status=429, retry_after=1, times=1)
        await say(bot, "hola")
        [reply] = await fakes.whapi.wait_sent(1, to=CHAT)
        first, second = fakes.whapi.calls_to(SEND)
        assert (first.status, second.status) == (429, 200)
        assert second.at - first.at >= 0.95
        assert reply.body == "Recibido: hola"


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 500, "after_processing": True},
        {"status": 502, "after_processing": True, "delay": 0.2},
        {"drop": True, "after_processing": True},
        {"status": 200, "delay": 1.6, "after_processing": True},
    ],
    ids=["500-after", "502-after-slow", "drop-after", "timeout-after"],
)
async def test_chaos_whapi_ambiguous_send_is_not_duplicated(
    tmp_path: Path, fault: dict[str, Any]
) -> None:
    """Whapi sent it but the client saw an error: the retry finds it in history, no resend."""
    async with bot_with_faults(tmp_path) as (fakes, bot):
        fakes.whapi.faults.add(SEND, times=1, **fault)
        await say(bot, "hola")
        await fakes.whapi.wait_sent(1, to=CHAT)
        await settled(bot)
        await trio.sleep(0.3)
        assert [m.body for m in fakes.whapi.sent_to(CHAT)] == ["Recibido: hola"]
        await still_answers(fakes, bot)


async def test_chaos_whapi_slow_send_is_not_duplicated(tmp_path: Path) -> None:
    """The send is held longer than the client's timeout *before* Whapi acts on it."""
    async with bot_with_faults(tmp_path) as (fakes, bot):
        fakes.whapi.faults.add(SEND, status=200, delay=1.6, times=1)
        await say(bot, "hola")
        await fakes.whapi.wait_sent(1, to=CHAT)
        await settled(bot)
        await trio.sleep(1.0)
        bodies = [m.body for m in fakes.whapi.sent_to(CHAT)]
        assert bodies == ["Recibido: hola"], bodies


async def test_chaos_whapi_send_always_failing_leaves_no_stuck_actor(tmp_path: Path) -> None:
    async with bot_with_faults(tmp_path) as (fakes, bot):
        fakes.whapi.faults.add(SEND, status=500, times=float("inf"))
        started = trio.current_time()
        await say(bot, "hola")
        await settled(bot)
        elapsed = trio.current_time() - started
        # The answer and then the fallback each tried at most WABOT_WHAPI_MAX_ATTEMPTS times.
        assert 4 <= len(fakes.whapi.calls_to(SEND)) <= 6
        assert not fakes.whapi.sent
        assert elapsed < 10
        await still_answers(fakes, bot)


@pytest.mark.parametrize(
    "fault",
    [{"status": 500}, {"status": 429, "retry_after": 30}, {"status": 200, "delay": 5.0}],
    ids=["500", "429", "timeout"],
)
async def test_chaos_whapi_presence_faults_do_not_block_the_answer(
    tmp_path: Path, fault: dict[str, Any]
) -> None:
    async with bot_with_faults(tmp_path, typing_delay_seconds=0.0) as (fakes, bot):
        fakes.whapi.faults.add(r"^/presences/", times=float("inf"), **fault)
        started = trio.current_time()
        await say(bot, "hola")
        [reply] = await fakes.whapi.wait_sent(1, to=CHAT, timeout=10)
        assert reply.body == "Recibido: hola"
        assert trio.current_time() - started < 3.5
        await settled(bot)
        assert len(fakes.whapi.sent_to(CHAT)) == 1


# -- isolation -----------------------------------------------------------------------------------


async def test_chaos_slow_upstream_for_one_user_does_not_slow_others(tmp_path: Path) -> None:
    others = [f"5730034{n:05d}" for n in range(scale(10, 40))]

    async def responder(request: ResponseRequest) -> Any:
        if "lento" in (request.last_user_text or ""):
            await trio.sleep(4.0)
        return default_responder(request)

    async with bot_with_faults(tmp_path, openai_timeout_seconds=8.0) as (fakes, bot):
        fakes.openai.responder = responder
        await say(bot, "lento por favor")
        await wait_until(lambda: len(responses_calls(fakes)) == 1, timeout=5)
        latencies: dict[str, float] = {}

        async def one(user: str) -> None:
            await trio.sleep(random.random() * 0.5)
            start = trio.current_time()
            await say(bot, f"hola {user}", user)
            await fakes.whapi.wait_sent(1, to=user, timeout=10)
            latencies[user] = trio.current_time() - start

        async with trio.open_nursery() as nursery:
            for user in others:
                nursery.start_soon(one, user)
        assert not fakes.whapi.sent_to(CHAT), "the slow user should still be waiting"
        # Held behind the slow user, another would wait its 4 s; a busy machine adds far less.
        worst = max(latencies.values())
        assert worst < 3.0, latencies
        await fakes.whapi.wait_sent(1, to=CHAT, timeout=10)


# -- the retry policy itself -------------------------------------------------------------------


def test_chaos_backoff_has_jitter_caps_and_honours_retry_after() -> None:
    policy = RetryPolicy(attempts=10, base_seconds=0.1, max_seconds=5.0)
    for attempt in range(1, 11):
        ceiling = min(5.0, 0.1 * 2 ** (attempt - 1))
        delays = [policy.delay(attempt, None) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 100, "no jitter"
    assert all(policy.delay(1, 2.5) >= 2.5 for _ in range(100))
    assert policy.delay(1, 3600) <= 60.0, "an absurd Retry-After is capped"


async def test_chaos_retrying_is_bounded_in_attempts_and_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    policy = RetryPolicy(attempts=5, base_seconds=0.5, max_seconds=8.0)
    attempts: list[float] = []

    def retryable(exc: BaseException) -> float | None:
        return 0.0 if isinstance(exc, RuntimeError) else None

    start = trio.current_time()
    with pytest.raises(RuntimeError, match="the real error"):
        async for attempt in policy.retrying(retryable, what="test"):
            with attempt:
                attempts.append(trio.current_time())
                raise RuntimeError("the real error")
    assert len(attempts) == 5
    assert trio.current_time() - start <= sum(min(8.0, 0.5 * 2**k) for k in range(4))


async def test_chaos_retrying_waits_what_the_server_asked_and_stops_at_the_rule(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The classifier's wait is a floor on the next attempt; what it refuses is not retried."""
    policy = RetryPolicy(attempts=3, base_seconds=0.01, max_seconds=0.01)
    attempts: list[float] = []

    def retryable(exc: BaseException) -> float | None:
        return 2.5 if isinstance(exc, TimeoutError) else None

    with pytest.raises(ValueError, match="not retried"):
        async for attempt in policy.retrying(retryable, what="test"):
            with attempt:
                attempts.append(trio.current_time())
                raise TimeoutError if len(attempts) == 1 else ValueError("not retried")
    assert len(attempts) == 2
    assert attempts[1] - attempts[0] >= 2.5
