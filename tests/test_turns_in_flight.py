"""Turns in flight and the pools under them, as an operator sees them in /metrics and inspection.

A turn waiting on a slow model holds one of ``WABOT_MAX_CONCURRENT_TURNS`` (memory, not CPU, is
what the bound protects); past the bound a turn shows ``waiting for a turn slot``. A request
that finds every connection of its client's pool busy waits for one, and that wait is measured
per upstream (``wabot_http_pool_wait_seconds``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from sandbox import payloads
from tests.harness import make_settings, open_bot, open_fakes

ADMIN = "inflight-admin-token"


def _metric(metrics: str, name: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"no {name} in /metrics")


async def test_slow_model_calls_show_as_turns_in_flight_and_past_the_bound_as_waiting(
    tmp_path: Path,
) -> None:
    async with open_fakes() as fakes:
        settings = make_settings(
            fakes, tmp_path, max_concurrent_turns=2, admin_token=ADMIN, openai_timeout_seconds=6
        )
        async with open_bot(fakes, settings) as bot:
            fakes.openai.faults.delay(r"/responses$", 1.5, times=3)
            users = ["573004440001", "573004440002", "573004440003"]
            for user in users:
                await bot.post(payloads.webhook([payloads.text_message(user, "hola")]))

            async def stage_of(user: str) -> Any:
                info = await bot.http.get(
                    f"{bot.url}/actors/{user}", headers={"Authorization": f"Bearer {ADMIN}"}
                )
                turn = info.json().get("turn")
                return turn["stage"] if turn else None

            with trio.fail_after(5):
                while True:
                    metrics = (await bot.http.get(f"{bot.url}/metrics")).text
                    if _metric(metrics, "wabot_turns_waiting_for_slot") == 1.0:
                        break
                    await trio.sleep(0.05)
            assert _metric(metrics, "wabot_turns_in_flight") == 2.0
            stages = [await stage_of(user) for user in users]
            assert stages.count("waiting for a turn slot") == 1, stages

            for user in users:
                await fakes.whapi.wait_sent(1, to=f"{user}@s.whatsapp.net", timeout=10)
            with trio.fail_after(5):  # a turn gives its slot back once its send is settled
                while _metric(metrics, "wabot_turns_in_flight") != 0.0:
                    await trio.sleep(0.05)
                    metrics = (await bot.http.get(f"{bot.url}/metrics")).text
            assert _metric(metrics, "wabot_turns_waiting_for_slot") == 0.0


async def test_a_request_waiting_for_a_pooled_connection_is_timed(tmp_path: Path) -> None:
    async with open_fakes() as fakes:
        settings = make_settings(fakes, tmp_path, http_pool_size=1)
        async with open_bot(fakes, settings) as bot:
            fakes.openai.faults.delay(r"/responses$", 1.0, times=2)
            users = ["573004440011", "573004440012"]
            for user in users:
                await bot.post(payloads.webhook([payloads.text_message(user, "hola")]))
            for user in users:
                await fakes.whapi.wait_sent(1, to=f"{user}@s.whatsapp.net", timeout=10)
            metrics = (await bot.http.get(f"{bot.url}/metrics")).text
            label = '{upstream="openai"}'
            waits = _metric(metrics, f"wabot_http_pool_wait_seconds_count{label}")
            waited = _metric(metrics, f"wabot_http_pool_wait_seconds_sum{label}")
            assert waits >= 4, "two conversations and two responses, each timed once"
            assert waited >= 0.8, "one model call waited for the other's connection"
            assert _metric(metrics, 'wabot_http_pool_wait_seconds_count{upstream="whapi"}') >= 2
