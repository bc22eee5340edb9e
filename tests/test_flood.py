"""Floods: one user sending hundreds of messages per second.

The documented rule (``customer/actor.py``): past WABOT_MAX_BUFFERED messages the user actor merges
further text into its last buffered entry up to WABOT_MAX_BUFFERED_CHARS, and drops the rest
as ``dropped:flood`` (marked done in the inbox, counted). Mailbox and buffer stay bounded,
memory stays flat, every webhook is acknowledged quickly and the other users are unaffected.
"""

from __future__ import annotations

import json
import resource
from pathlib import Path
from typing import Any

import trio

from sandbox import payloads
from sandbox.openai import ResponseRequest, default_responder
from store import InboxStatus
from tests.chaos_helpers import input_text, responses_calls, scale
from tests.harness import make_settings, open_bot, open_fakes, wait_until

FLOODER = "573006600001"
CHAT = f"{FLOODER}@s.whatsapp.net"


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def journal_outcomes(data_dir: Path) -> dict[str, str]:
    outcomes: dict[str, str] = {}
    for name in ("journal.old.jsonl", "journal.jsonl"):
        path = data_dir / name
        if not path.exists():
            continue
        for line in path.read_bytes().splitlines():
            try:
                op = json.loads(line)
            except ValueError:
                continue
            op = op.get("op", op) if isinstance(op.get("op"), dict) else op
            if op.get("op") == "inbox_done":
                for message_id in op["ids"]:
                    outcomes[message_id] = op["outcome"]
    return outcomes


async def test_chaos_flood_is_bounded_merged_dropped_and_isolated(tmp_path: Path) -> None:
    total = scale(600, 3000)
    others = [f"5730067{n:05d}" for n in range(10)]

    async def responder(request: ResponseRequest) -> Any:
        await trio.sleep(0.5)  # a turn in flight while the flood keeps coming
        return default_responder(request)

    async with open_fakes() as fakes:
        settings = make_settings(
            fakes,
            tmp_path,
            max_buffered=20,
            max_buffered_chars=600,
            mailbox_size=16,
            buffer_seconds=0.2,
            max_wait_seconds=1.0,
            openai_timeout_seconds=5.0,
        )
        fakes.openai.responder = responder
        async with open_bot(fakes, settings) as bot:
            supervisor, store = bot.service.supervisor, bot.service.store
            # Warm up so that allocator growth from first use is not counted as a leak.
            await bot.post(payloads.webhook([payloads.text_message(others[0], "hola")]))
            await fakes.whapi.wait_sent(1, to=others[0])
            baseline = rss_mib()
            samples: dict[str, int] = {"mailbox": 0, "buffer": 0, "chars": 0}
            acks: list[float] = []
            ids: list[str] = []

            async def sample() -> None:
                while True:
                    cell = supervisor.cell(FLOODER)
                    if cell is not None and cell.behavior is not None:
                        actor = getattr(cell.behavior, "inner", cell.behavior)
                        samples["mailbox"] = max(samples["mailbox"], cell.mailbox_depth)
                        samples["buffer"] = max(samples["buffer"], len(actor.buffer))
                        samples["chars"] = max(samples["chars"], actor.buffer.chars)
                    await trio.sleep(0.002)

            async def flood(worker: int, count: int) -> None:
                for n in range(count):
                    message = payloads.text_message(FLOODER, f"spam {worker}-{n} " + "x" * 20)
                    ids.append(message["id"])
                    start = trio.current_time()
                    assert (await bot.post(payloads.webhook([message]))).status_code == 200
                    acks.append(trio.current_time() - start)

            latencies: dict[str, float] = {}

            async def other(user: str) -> None:
                await trio.sleep(0.3)
                start = trio.current_time()
                await bot.post(payloads.webhook([payloads.text_message(user, f"hola {user}")]))
                await fakes.whapi.wait_sent(1, to=user, timeout=15)
                latencies[user] = trio.current_time() - start

            started = trio.current_time()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(sample)
                async with trio.open_nursery() as senders:
                    workers = 16
                    for worker in range(workers):
                        senders.start_soon(flood, worker, total // workers)
                    for user in others[1:]:
                        senders.start_soon(other, user)
                flood_seconds = trio.current_time() - started
                await wait_until(lambda: store.stats().pending == 0, timeout=30)
                nursery.cancel_scope.cancel()
            rate = len(ids) / flood_seconds
            actor = supervisor.cell(FLOODER).behavior  # type: ignore[union-attr]

            # Bounded: mailbox, buffer (messages and characters), the actor's id memory.
            assert samples["mailbox"] <= settings.mailbox_size
            assert samples["buffer"] <= settings.max_buffered
            # (one message may overshoot the character cap; see the xfail test below)
            assert samples["chars"] <= settings.max_buffered_chars + 40
            assert len(actor._handled) <= max(256, settings.max_buffered * 4)
            # The documented rule: merged into turns, the rest dropped as flood, all settled.
            assert actor.flood_dropped > 0
            outcomes = journal_outcomes(tmp_path)
            assert all(store.inbox_status(i) is InboxStatus.DONE for i in ids)
            dropped = [i for i in ids if outcomes.get(i) == "dropped:flood"]
            assert len(dropped) == actor.flood_dropped
            answered = [c for c in responses_calls(fakes) if "spam" in input_text(c)]
            # One call per turn, and one more each time a turn gave way (WABOT_SUPERSEDE).
            gave_way = bot.service.deps.telemetry.registry.get_sample_value(
                "wabot_supersedes_total", {"result": "done"}
            )
            assert len(answered) == actor.turns + (gave_way or 0)
            # The cap, plus one message's overshoot and the newlines that join the batch.
            bound = settings.max_buffered_chars + 40 + settings.max_buffered
            longest = max(len(input_text(c)) for c in answered)
            assert longest <= bound, (longest, bound)
            assert len(fakes.whapi.sent_to(CHAT)) == actor.turns
            # Acknowledged fast all along; the others answered as if nothing happened.
            acks.sort()
            assert acks[int(len(acks) * 0.99) - 1] < 0.5, acks[-5:]
            assert max(latencies.values()) < 3.0, latencies
            # Memory flat (loose bound: allocator noise, not per-message growth).
            assert rss_mib() - baseline < 40, (baseline, rss_mib())
            print(
                f"flood: {len(ids)} msgs at {rate:.0f}/s, {actor.turns} turns, "
                f"{actor.flood_dropped} dropped, max mailbox {samples['mailbox']}, "
                f"max buffer {samples['buffer']}/{samples['chars']} chars, "
                f"p99 ack {acks[int(len(acks) * 0.99) - 1] * 1000:.0f} ms"
            )


async def test_flood_one_huge_message_respects_the_character_cap(tmp_path: Path) -> None:
    """Found by this suite: one long text used to pass the cap whole (fixed in the actor)."""
    async with open_fakes() as fakes:
        settings = make_settings(fakes, tmp_path, max_buffered_chars=1000)
        async with open_bot(fakes, settings) as bot:
            body = payloads.webhook([payloads.text_message(FLOODER, "y" * 50_000)])
            assert (await bot.post(body)).status_code == 200
            await fakes.whapi.wait_sent(1, to=CHAT)
            [call] = responses_calls(fakes)
            assert len(input_text(call)) <= settings.max_buffered_chars
