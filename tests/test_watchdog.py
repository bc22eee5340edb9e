"""The memory watchdog: under a tiny configured limit it passivates idle actors, says so in the
logs and counts it in ``/metrics``; busy actors are never passivated."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trio

from gateway.watchdog import MemoryWatchdog, release_free_memory
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


class _Live:
    """Stands in for the supervisor: only its number of live actors matters here."""

    def __init__(self) -> None:
        self.count = 0

    def __len__(self) -> int:
        return self.count


class _Service:
    def __init__(self) -> None:
        self.supervisor = _Live()
        self.gateway = None
        self.deps = None


async def test_freed_memory_is_given_back_once_many_actors_have_retired() -> None:
    service = _Service()
    watchdog = MemoryWatchdog(
        service,  # type: ignore[arg-type]
        soft_bytes=0,
        hard_bytes=0,
        interval=0.01,
        measure=lambda: 100 * 2**20,
    )
    live = service.supervisor
    live.count = 8_000
    assert not watchdog.trim_due()  # the peak is recorded
    live.count = 7_000
    assert not watchdog.trim_due(), "1 000 of 8 000 is not a quarter of the peak"
    live.count = 5_900
    assert watchdog.trim_due()
    await watchdog.trim()
    assert watchdog.trims == (1 if release_free_memory() else 0)
    assert not watchdog.trim_due(), "the peak restarts from the actors still live"
    live.count = 400
    assert watchdog.trim_due()
    live.count, fresh = (
        900,
        MemoryWatchdog(
            service,  # type: ignore[arg-type]
            soft_bytes=0,
            hard_bytes=0,
            interval=0.01,
        ),
    )
    assert not fresh.trim_due()
    live.count = 0
    assert not fresh.trim_due(), "fewer than 1 000 retired: not worth a trim"


async def test_freed_memory_is_given_back_when_rss_creeps_up_in_steady_traffic() -> None:
    """Few live actors, so none retire in numbers; RSS grows (the C heap keeps freed pages)."""
    service = _Service()
    service.supervisor.count = 200
    rss = [100 * 2**20]
    watchdog = MemoryWatchdog(
        service,  # type: ignore[arg-type]
        soft_bytes=0,
        hard_bytes=0,
        interval=0.01,
        measure=lambda: rss[0],
        trim_growth_interval=0.2,
    )
    watchdog.check()
    assert not watchdog.trim_due()  # the first check is the baseline
    await trio.sleep(0.25)
    rss[0] += 7 * 2**20
    watchdog.check()
    assert not watchdog.trim_due(), "7 MiB is under both 8 MiB and 5 %"
    rss[0] += 2 * 2**20
    watchdog.check()
    assert watchdog.trim_due()
    await watchdog.trim()
    assert watchdog.trims == (1 if release_free_memory() else 0)
    rss[0] += 9 * 2**20
    watchdog.check()
    assert not watchdog.trim_due(), "grown again, but the last trim was just now"
    await trio.sleep(0.25)
    assert watchdog.trim_due()
    # On a large heap the threshold is 5 %: 40 MiB of 1 GiB is not enough.
    rss[0] = 2**30
    await watchdog.trim()
    rss[0] += 40 * 2**20
    await trio.sleep(0.25)
    watchdog.check()
    assert not watchdog.trim_due()
    rss[0] += 20 * 2**20
    watchdog.check()
    assert watchdog.trim_due()
