"""Overload answered fast: 503 with Retry-After before the body is read, nothing acknowledged lost.

The three reasons of ``gateway.overload`` end to end through a real bot: webhooks already being
read past ``WABOT_MAX_PENDING_WEBHOOKS`` (a webhook whose body trickles in holds its place), an
event loop that ran late (a blocking call on the loop), and RSS over the hard memory limit.
Each refusal is counted by reason in /metrics, and the refused message, delivered again once
the overload is over (as Whapi does), is answered once.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import trio
import trio.testing

from gateway.app import SECRET_HEADER
from gateway.overload import LAG_HALF_LIFE_SECONDS, LoopLag
from sandbox import payloads
from tests.harness import SECRET, make_settings, open_bot, open_fakes


def _shed(metrics: str, reason: str) -> float:
    prefix = f'wabot_webhooks_shed_total{{reason="{reason}"}} '
    for line in metrics.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix) :])
    raise AssertionError(f"no {prefix!r} in /metrics")


def test_the_loop_lag_fades_by_half_every_half_life() -> None:
    clock = trio.testing.MockClock()

    async def main() -> None:
        lag = LoopLag()
        assert lag.seconds == 0.0
        lag.observe(2.0)
        clock.jump(LAG_HALF_LIFE_SECONDS)
        assert abs(lag.seconds - 1.0) < 1e-9
        lag.observe(0.2)  # a smaller lateness does not hide the recent worse one
        assert abs(lag.seconds - 1.0) < 1e-9
        clock.jump(10 * LAG_HALF_LIFE_SECONDS)
        assert lag.seconds < 0.002

    trio.run(main, clock=clock)


async def test_webhooks_past_the_pending_bound_get_503_with_retry_after(tmp_path: Path) -> None:
    async with open_fakes() as fakes:
        settings = make_settings(fakes, tmp_path, max_pending_webhooks=1, buffer_seconds=0.2)
        async with open_bot(fakes, settings) as bot:
            user = "573001110001"
            slow = payloads.webhook([payloads.text_message(user, "despacio")])
            raw = json.dumps(slow).encode()
            host, port = bot.url.removeprefix("http://").split(":")
            stream = await trio.open_tcp_stream(host, int(port))
            head = (
                f"POST /hook HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                f"{SECRET_HEADER}: {SECRET}\r\nContent-Length: {len(raw)}\r\n\r\n"
            ).encode()
            await stream.send_all(head + raw[:10])  # the body trickles: it holds its place
            await trio.sleep(0.3)

            other = payloads.text_message("573001110002", "hola")
            refused = await bot.post(payloads.webhook([other]))
            assert refused.status_code == 503
            assert refused.headers["retry-after"] == "2"
            metrics = (await bot.http.get(f"{bot.url}/metrics")).text
            assert _shed(metrics, "webhooks") == 1.0

            await stream.send_all(raw[10:])
            answer = b""
            with trio.fail_after(5):
                while b"\r\n\r\n" not in answer:
                    answer += await stream.receive_some()
            assert answer.startswith(b"HTTP/1.1 200")
            await stream.aclose()

            again = await bot.post(payloads.webhook([other]))  # Whapi delivers it again
            assert again.status_code == 200
            await fakes.whapi.wait_sent(1, to="573001110002@s.whatsapp.net")
            await fakes.whapi.wait_sent(1, to=f"{user}@s.whatsapp.net")


async def test_a_late_event_loop_sheds_webhooks_until_it_catches_up(tmp_path: Path) -> None:
    async with open_fakes() as fakes:
        settings = make_settings(fakes, tmp_path, shed_loop_lag_seconds=0.3, buffer_seconds=0.2)
        async with open_bot(fakes, settings) as bot:
            time.sleep(1.0)  # the loop's one thread is busy: every task wakes a second late
            await trio.sleep(0.1)  # the lag task wakes and records how late it was
            user = "573001110003"
            message = payloads.text_message(user, "hola")
            refused = await bot.post(payloads.webhook([message]))
            assert refused.status_code == 503
            assert refused.headers["retry-after"] == "2"
            assert _shed((await bot.http.get(f"{bot.url}/metrics")).text, "loop_lag") >= 1.0

            with trio.fail_after(10):  # the lag fades; the redelivery is taken and answered
                while (again := await bot.post(payloads.webhook([message]))).status_code == 503:
                    await trio.sleep(0.2)
            assert again.status_code == 200
            await fakes.whapi.wait_sent(1, to=f"{user}@s.whatsapp.net")
            assert len(fakes.whapi.sent_to(f"{user}@s.whatsapp.net")) == 1


async def test_rss_over_the_hard_limit_sheds_webhooks(tmp_path: Path) -> None:
    async with open_fakes() as fakes:
        settings = make_settings(fakes, tmp_path, buffer_seconds=0.2)
        async with open_bot(fakes, settings) as bot:
            bot.service.watchdog.level = 2  # what its check sets over WABOT_MEMORY_HARD_MB
            refused = await bot.post(payloads.webhook([payloads.text_message("573001110004", "a")]))
            assert refused.status_code == 503
            assert _shed((await bot.http.get(f"{bot.url}/metrics")).text, "memory") == 1.0
            bot.service.watchdog.level = 0
            taken = await bot.post(payloads.webhook([payloads.text_message("573001110004", "a")]))
            assert taken.status_code == 200
