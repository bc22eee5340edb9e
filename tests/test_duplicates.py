"""Duplicates and order: at-least-once delivery must have an effect exactly once.

Every event is delivered three times in shuffled order (singly and in mixed batches), also
across a restart on the same data directory: each user burst gets exactly one model turn and
one reply. Delivery statuses arriving out of order (or for unknown messages) change nothing.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import trio

from sandbox import payloads
from tests.chaos_helpers import input_text, responses_calls, scale
from tests.harness import Fakes, make_settings, open_bot, open_fakes, wait_until

USERS = [f"5730022{n:05d}" for n in range(scale(6, 30))]


def chat(user: str) -> str:
    return f"{user}@s.whatsapp.net"


def bursts() -> dict[str, list[dict[str, Any]]]:
    return {
        user: [payloads.text_message(user, f"{user} parte {n}") for n in range(3)] for user in USERS
    }


def shuffled_deliveries(messages: list[dict[str, Any]], rng: random.Random) -> list[Any]:
    """Each message three times: alone or in batches of up to three, in random order."""
    copies = [m for m in messages for _ in range(3)]
    rng.shuffle(copies)
    bodies: list[Any] = []
    while copies:
        size = rng.randint(1, 3)
        bodies.append(payloads.webhook(copies[:size]))
        copies = copies[size:]
    return bodies


async def deliver_all(bot: Any, bodies: list[Any]) -> None:
    async with trio.open_nursery() as nursery:
        for body in bodies:

            async def post(body: Any = body) -> None:
                assert (await bot.post(body)).status_code == 200

            nursery.start_soon(post)


def assert_one_turn_per_burst(fakes: Fakes, sent_by: dict[str, list[dict[str, Any]]]) -> None:
    for user, messages in sent_by.items():
        replies = fakes.whapi.sent_to(chat(user))
        assert len(replies) == 1, (user, [r.body for r in replies])
        calls = [c for c in responses_calls(fakes) if user in input_text(c)]
        assert len(calls) == 1, (user, [input_text(c) for c in calls])
        text = input_text(calls[0])
        for message in messages:
            assert text.count(message["text"]["body"]) == 1, text


async def test_chaos_each_event_thrice_shuffled_one_reply_per_burst(tmp_path: Path) -> None:
    rng = random.Random(7)
    async with open_fakes() as fakes:
        settings = make_settings(fakes, tmp_path, buffer_seconds=1.0, max_wait_seconds=4.0)
        async with open_bot(fakes, settings) as bot:
            sent_by = bursts()
            everything = [m for ms in sent_by.values() for m in ms]
            await deliver_all(bot, shuffled_deliveries(everything, rng))
            await fakes.whapi.wait_sent(len(USERS), timeout=20)
            await wait_until(lambda: bot.service.store.stats().pending == 0, timeout=10)
            # ... and once more, late, after the answers went out.
            await deliver_all(bot, shuffled_deliveries(everything, rng))
            await trio.sleep(1.3)
            assert_one_turn_per_burst(fakes, sent_by)
            counters = bot.service.gateway.counters
            assert counters.messages == len(everything)
            assert counters.duplicates == 5 * len(everything)


async def test_redelivery_across_a_restart_is_recognised(tmp_path: Path) -> None:
    """Answered before the restart: redelivered after it, nothing happens again."""
    rng = random.Random(11)
    async with open_fakes() as fakes:
        settings = make_settings(fakes, tmp_path, buffer_seconds=0.5, max_wait_seconds=3.0)
        sent_by = bursts()
        everything = [m for ms in sent_by.values() for m in ms]
        async with open_bot(fakes, settings) as bot:
            await deliver_all(bot, shuffled_deliveries(everything, rng))
            await fakes.whapi.wait_sent(len(USERS), timeout=20)
            await wait_until(lambda: bot.service.store.stats().pending == 0, timeout=10)
        async with open_bot(fakes, settings) as bot:
            await deliver_all(bot, shuffled_deliveries(everything, rng))
            await trio.sleep(1.0)
            assert bot.service.gateway.counters.messages == 0
            assert len(bot.service.supervisor) == 0, "a duplicate activated an actor"
        assert_one_turn_per_burst(fakes, sent_by)


async def test_pending_burst_survives_restart_and_is_answered_once(tmp_path: Path) -> None:
    """Acknowledged but unanswered at the restart: replayed once, redeliveries ignored."""
    rng = random.Random(13)
    async with open_fakes() as fakes:
        slow = make_settings(fakes, tmp_path, buffer_seconds=30.0, max_wait_seconds=60.0)
        sent_by = bursts()
        everything = [m for ms in sent_by.values() for m in ms]
        async with open_bot(fakes, slow) as bot:
            await deliver_all(bot, shuffled_deliveries(everything, rng))
            assert bot.service.store.stats().pending == len(everything)
        assert not fakes.whapi.sent
        fast = make_settings(fakes, tmp_path, buffer_seconds=0.5, max_wait_seconds=3.0)
        async with open_bot(fakes, fast) as bot:
            # The redeliveries race the replay of the inbox.
            await deliver_all(bot, shuffled_deliveries(everything, rng))
            await fakes.whapi.wait_sent(len(USERS), timeout=20)
            await wait_until(lambda: bot.service.store.stats().pending == 0, timeout=10)
            await trio.sleep(0.8)
        assert_one_turn_per_burst(fakes, sent_by)


async def test_statuses_out_of_order_change_nothing(tmp_path: Path) -> None:
    rng = random.Random(17)
    user = USERS[0]
    async with open_fakes() as fakes, open_bot(fakes, make_settings(fakes, tmp_path)) as bot:
        await bot.post(payloads.webhook([payloads.text_message(user, "hola")]))
        [reply] = await fakes.whapi.wait_sent(1, to=chat(user))
        await wait_until(lambda: bot.service.store.stats().pending == 0)
        await trio.sleep(0.3)
        store = bot.service.store
        before = (store.stats().records, store.stats().done_ids, store.get(user))
        calls_before = len(fakes.openai.calls)
        statuses = [
            payloads.status_webhook(message_id, status, recipient=user, timestamp=stamp)
            for message_id in (reply.id, "wamid.unknown", "")
            for status, stamp in (("sent", 1), ("delivered", 2), ("read", 3), ("played", 4))
        ] * 3
        rng.shuffle(statuses)
        for body in statuses:
            assert (await bot.post(body)).status_code == 200
        await trio.sleep(0.5)
        assert (store.stats().records, store.stats().done_ids, store.get(user)) == before
        assert len(fakes.openai.calls) == calls_before
        assert len(fakes.whapi.sent) == 1
        assert bot.service.gateway.counters.ignored.get("statuses") == len(statuses)
