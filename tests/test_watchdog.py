"""The memory watchdog: under a tiny configured limit it passivates idle actors, says so in the
logs and counts it in ``/metrics``; busy actors are never passivated."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trio

from gateway.tuning import MemoryTrimmer, release_free_memory
from gateway.watchdog import MemoryWatchdog
from sandbox import payloads
from tests.harness import make_settings, open_bot, open_fakes, wait_until
from tests.test_metrics import scrape, value

USERS = ("573001111111", "573002222222")


async def test_low_soft_limit_passivates_idle_actors(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.watchdog")
    async with open_fakes() as fakes:
        settings = make_settings(
            fakes,
            tmp_path,
            memory_soft_mb=1,
            memory_check_seconds=0.1,
            buffer_seconds=1.0,
            idle_seconds=60,
        )
        async with open_bot(fakes, settings) as bot:
            busy, idle = USERS
            fakes.openai.faults.delay("/v1/responses$", 1.0, times=1)
            await bot.post(payloads.webhook([payloads.text_message(idle, "hola")]))
            await fakes.whapi.wait_sent(1, to=idle, timeout=5)
            supervisor = bot.service.supervisor
            await wait_until(lambda: idle not in supervisor, timeout=3)

            # A buffering actor holds messages: it stays while the pressure lasts.
            await bot.post(payloads.webhook([payloads.text_message(busy, "hola")]))
            await trio.sleep(0.5)
            assert busy in supervisor
            await fakes.whapi.wait_sent(1, to=busy, timeout=5)
            await wait_until(lambda: busy not in supervisor, timeout=3)

            samples = await scrape(bot)
            assert value(samples, "wabot_memory_passivations_total") == 2
            assert value(samples, "wabot_actor_passivations_total") == 2
            assert value(samples, "wabot_memory_pressure_events_total") == 1
            assert value(samples, "wabot_memory_pressure") == 1
            assert value(samples, "wabot_live_actors") == 0
            # Both answered once; passivation lost nothing.
            assert [len(fakes.whapi.sent_to(u)) for u in USERS] == [1, 1]
    warnings = [r for r in caplog.records if r.name == "gateway.watchdog"]
    assert any("passivated 1 idle actors" in r.getMessage() for r in warnings)
    assert all(r.levelno == logging.WARNING for r in warnings)
    # Once per episode and per action, not every 0.1 s check.
    assert len(warnings) <= 4


class _Supervisor:
    """Stands in for the supervisor: idle actors to passivate, nothing else."""

    def __init__(self, idle: int) -> None:
        self.idle = idle

    def __len__(self) -> int:
        return self.idle

    def retire_idle(self, limit: int | None = None) -> int:
        count = self.idle if limit is None else min(limit, self.idle)
        self.idle -= count
        return count


class _Service:
    def __init__(self, idle: int) -> None:
        self.supervisor = _Supervisor(idle)
        self.gateway = None
        self.deps = None


async def test_passivating_gives_the_freed_memory_back_at_once() -> None:
    """Not at the next periodic trim: over the limit, memory is what is short."""
    service = _Service(idle=100)
    trimmer = MemoryTrimmer(interval=3600)
    watchdog = MemoryWatchdog(
        service,
        soft_bytes=2**20,
        hard_bytes=0,
        interval=0.01,
        trimmer=trimmer,
        measure=lambda: 100 * 2**20,
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(watchdog.run)
        with trio.fail_after(5):
            while service.supervisor.idle:
                await trio.sleep(0.01)
        await trio.sleep(0.05)
        nursery.cancel_scope.cancel()
    assert watchdog.passivated == 100 and watchdog.level == 1
    assert trimmer.trims >= 1 if release_free_memory() else trimmer.trims == 0
    quiet = MemoryWatchdog(
        _Service(idle=0),
        soft_bytes=0,
        hard_bytes=0,
        interval=0.01,
        trimmer=(idle_trimmer := MemoryTrimmer(interval=3600)),
    )
    assert quiet.check() == 0
    assert idle_trimmer.trims == 0, "no limit, nothing passivated: no trim out of turn"
