"""The idle-stop race: a message arriving exactly when an actor's idle deadline passes.

Against ``runtime.supervisor.Supervisor`` directly (a tiny behavior, a virtual clock, thousands of
trials timed to land on the reaper's tick from either side), then through the real user actor
over HTTP: no message is ever lost or processed twice, and there are never two live
activations for one key. Plus: 10k concurrent first messages to one key activate it once.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import attrs
import trio
import trio.testing

from actors.runtime.mailbox import Mailbox
from actors.runtime.supervisor import Cell, RuntimeConfig, Supervisor
from sandbox import payloads
from tests.chaos_helpers import scale
from tests.harness import make_settings, open_bot, open_fakes, wait_until

IDLE = 1.0  # dyadic timings: the virtual clock hits the deadlines exactly


@attrs.define
class Ledger:
    """What every activation did, shared by the test's behaviors."""

    processed: dict[str, list[int]] = attrs.Factory(dict)
    live: dict[str, int] = attrs.Factory(dict)
    max_live: int = 0
    activations: int = 0


class Recorder:
    """A tiny actor: records each message; idle whenever it is not in the middle of one."""

    def __init__(self, key: str, cell: Cell, ledger: Ledger) -> None:
        self.key = key
        self.ledger = ledger
        self.busy = False

    async def run(self, mailbox: Mailbox) -> None:
        ledger = self.ledger
        ledger.activations += 1
        ledger.live[self.key] = ledger.live.get(self.key, 0) + 1
        ledger.max_live = max(ledger.max_live, ledger.live[self.key])
        try:
            async for message in mailbox:
                self.busy = True
                ledger.processed.setdefault(self.key, []).append(message)
                if message % 3 == 0:
                    await trio.sleep(0)  # a checkpoint mid-message, sometimes
                self.busy = False
        finally:
            ledger.live[self.key] -= 1

    def is_idle(self) -> bool:
        return not self.busy

    async def give_up(self, error: BaseException) -> None:
        raise AssertionError("never crashes")


async def run_trials(keys: int, trials_per_key: int, *, mailbox_size: int = 4) -> Ledger:
    ledger = Ledger()
    config = RuntimeConfig(idle_seconds=IDLE, mailbox_size=mailbox_size)
    supervisor = Supervisor(lambda key, cell: Recorder(key, cell, ledger), config)
    told: dict[str, list[int]] = {}
    rng = random.Random(1234)
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        tick = config.reap_interval
        # Offsets around the exact deadline: before, on, after, and on it after a checkpoint.
        offsets = (-tick / 2, -1e-9, 0.0, 0.0, 0.0, 1e-9, tick / 2, tick)

        async def client(key: str) -> None:
            await trio.sleep(rng.randrange(4) * tick)
            for sequence in range(1, trials_per_key + 1):
                told.setdefault(key, []).append(sequence)
                await supervisor.tell(key, sequence, wait=10)
                last = trio.current_time()
                await trio.sleep_until(last + IDLE + tick + rng.choice(offsets))
                if rng.random() < 0.3:
                    await trio.sleep(0)

        async with trio.open_nursery() as clients:
            for n in range(keys):
                clients.start_soon(client, f"user{n}")
        await trio.sleep(IDLE * 3)
        await supervisor.drain(trio.current_time() + 5)
        supervisor.stop()
    assert ledger.processed == told, "a message was lost, duplicated or reordered"
    assert ledger.max_live == 1, "two live activations for one key"
    assert supervisor.counters.spawns == ledger.activations
    assert supervisor.counters.idle_stops > 0
    return ledger


async def test_chaos_idle_race_message_at_the_deadline_supervisor(
    autojump_clock: trio.testing.MockClock,
) -> None:
    trials = scale(10_000, 50_000)
    keys = 50
    ledger = await run_trials(keys, trials // keys)
    # Most trials end in an idle stop and a fresh activation: the race was really exercised.
    assert ledger.activations > trials // 4


class Buffering:
    """Like the user actor: a received message is buffered and answered when its window
    passes; if the mailbox closes first, the loop ends and the buffer stays unanswered (in
    the real actor: pending in the durable inbox until the customer writes again)."""

    def __init__(self, key: str, cell: Cell, answered: list[str]) -> None:
        self.key = key
        self.answered = answered
        self.buffer: list[str] = []
        self.due = math.inf

    async def run(self, mailbox: Mailbox) -> None:
        while True:
            with trio.move_on_at(self.due) as window:
                try:
                    message = await mailbox.receive()
                except trio.EndOfChannel:
                    return
            if window.cancelled_caught:
                self.answered.extend(self.buffer)
                self.buffer.clear()
                self.due = math.inf
            else:
                self.buffer.append(message)
                self.due = trio.current_time() + 0.001

    def is_idle(self) -> bool:
        return not self.buffer

    async def give_up(self, error: BaseException) -> None:
        raise AssertionError("never crashes")


async def test_passivation_never_takes_a_message_in_transit() -> None:
    """Memory-pressure passivation (``retire_idle``) at every scheduling step of an
    activation: the first message must be answered by the actor it was told to, not left
    in the inbox until the customer writes again (seen in the churn benchmark)."""
    answered: list[str] = []
    config = RuntimeConfig(idle_seconds=3600, mailbox_size=4)
    supervisor = Supervisor(lambda key, cell: Buffering(key, cell, answered), config)
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        for trial in range(200):
            key, message = f"k{trial}", f"m{trial}"
            supervisor.deliver(key, message)
            cell = supervisor.cell(key)
            assert cell is not None
            while not cell.done.is_set() and message not in answered:
                supervisor.retire_idle()
                await trio.lowlevel.checkpoint()
            assert message in answered, f"trial {trial}: retired holding its message"
        nursery.cancel_scope.cancel()


async def test_chaos_idle_race_concurrent_first_messages_activate_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ledger = Ledger()
    config = RuntimeConfig(idle_seconds=IDLE, mailbox_size=64)
    supervisor = Supervisor(lambda key, cell: Recorder(key, cell, ledger), config)
    count = scale(10_000, 50_000)
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        async with trio.open_nursery() as senders:
            for n in range(count):

                async def send(n: int = n) -> None:
                    await trio.sleep(random.random() * 0.01)
                    assert await supervisor.tell("one", n, wait=30)

                senders.start_soon(send)
        await supervisor.drain(trio.current_time() + 5)
        supervisor.stop()
    assert supervisor.counters.spawns == 1
    assert ledger.activations == 1
    assert sorted(ledger.processed["one"]) == list(range(count))


async def test_chaos_idle_race_real_user_actor(tmp_path: Path) -> None:
    """Through HTTP and the real user actor: messages sent around each idle deadline."""
    users = [f"5730044{n:05d}" for n in range(scale(25, 100))]
    rounds = scale(4, 10)
    async with open_fakes() as fakes:
        settings = make_settings(fakes, tmp_path, idle_seconds=0.4, buffer_seconds=0.05)
        async with open_bot(fakes, settings) as bot:
            supervisor = bot.service.supervisor
            rng = random.Random(5)
            max_live = 0

            async def watch() -> None:
                nonlocal max_live
                while True:
                    max_live = max(max_live, len(supervisor))
                    await trio.sleep(0.005)

            async def user(key: str) -> None:
                for n in range(rounds):
                    body = payloads.webhook([payloads.text_message(key, f"r{n} {key}")])
                    assert (await bot.post(body)).status_code == 200
                    await fakes.whapi.wait_sent(n + 1, to=key, timeout=15)
                    # The reaper looks every idle/4: land before, on and after the deadline.
                    await trio.sleep(settings.idle_seconds + rng.uniform(-0.1, 0.25))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch)
                async with trio.open_nursery() as clients:
                    for key in users:
                        clients.start_soon(user, key)
                nursery.cancel_scope.cancel()
            await wait_until(lambda: bot.service.store.stats().pending == 0, timeout=10)
            for key in users:
                bodies = [m.body or "" for m in fakes.whapi.sent_to(key)]
                assert len(bodies) == rounds, (key, bodies)
                assert all(f"r{n} " in bodies[n] for n in range(rounds)), bodies
            assert max_live <= len(users)
            assert supervisor.counters.idle_stops > 0
            counters = supervisor.counters
            # Every activation ended in an idle stop (or passivation) or is still live.
            assert counters.spawns == counters.idle_stops + counters.passivations + len(supervisor)
            assert counters.restarts == 0
