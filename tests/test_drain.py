"""SIGTERM drains, for real: a real process, a real signal, mid-turn and mid-buffer.

Readiness and new webhooks turn 503 at once, the in-flight turn still replies, buffered but
unstarted messages stay in the durable inbox and are answered once after the restart, and the
process exits 0 within the drain budget. The same through the hypercorn command.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from sandbox import payloads
from tests.harness import Fakes, open_fakes, wait_until
from tests.process import (
    BotProcess,
    free_port,
    hypercorn_command,
    open_bot_process,
    user_text,
)

USER = "573001234567"
CHAT = f"{USER}@s.whatsapp.net"
DRAIN_SECONDS = 5.0
#: Process teardown after the drain (final snapshot, interpreter exit) on a loaded CI box.
MARGIN = 3.0


def responses_calls(fakes: Fakes) -> list[Any]:
    return fakes.openai.calls_to("/v1/responses$", "POST")


async def readiness_after_signal(bot: BotProcess, *, within: float = 1.0) -> float:
    """Seconds until ``/readyz`` stopped answering 200 (503, or the listener closed)."""
    start = trio.current_time()
    with trio.fail_after(within):
        while True:
            try:
                response = await bot.get("/readyz", timeout=0.5)
            except httpx.TransportError:
                return trio.current_time() - start
            if response.status_code == 503:
                assert response.json()["draining"] is True
                return trio.current_time() - start
            await trio.sleep(0.01)


async def test_sigterm_mid_turn_finishes_the_turn_and_exits_0(tmp_path: Path) -> None:
    async with open_fakes() as fakes:
        async with open_bot_process(fakes, tmp_path / "data", drain_seconds=DRAIN_SECONDS) as bot:
            fakes.openai.faults.delay("/v1/responses$", 1.5, times=1)
            response = await bot.post(payloads.webhook([payloads.text_message(USER, "hola")]))
            assert response.status_code == 200
            await wait_until(lambda: len(responses_calls(fakes)) == 1, timeout=5)

            bot.terminate()
            signalled = trio.current_time()
            await readiness_after_signal(bot)
            late = await bot.post(payloads.webhook([payloads.text_message(USER, "otra")]))
            assert late.status_code == 503
            assert not fakes.whapi.sent_to(CHAT), "the turn cannot have finished yet"

            sent = await fakes.whapi.wait_sent(1, to=CHAT, timeout=DRAIN_SECONDS)
            assert "hola" in (sent[0].body or "")
            code = await bot.wait_exit(DRAIN_SECONDS + MARGIN)
            assert code == 0, bot.logs[-3000:]
            assert trio.current_time() - signalled < DRAIN_SECONDS + MARGIN
        assert len(fakes.whapi.sent_to(CHAT)) == 1
        assert len(responses_calls(fakes)) == 1
        assert "draining" in bot.logs


async def test_sigterm_mid_buffer_exits_at_once_and_the_restart_answers_once(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    async with open_fakes() as fakes:
        async with open_bot_process(fakes, data, buffer_seconds=30, max_wait_seconds=60) as bot:
            for text in ("quiero", "una reserva"):
                response = await bot.post(payloads.webhook([payloads.text_message(USER, text)]))
                assert response.status_code == 200
            # ``serve`` runs on the allocator its environment names (here none): it never
            # re-executes itself to pick another (tests/test_serving.py).
            environ = Path(f"/proc/{bot.process.pid}/environ").read_bytes().split(b"\0")
            assert not [v for v in environ if v.startswith(b"PYTHONMALLOC=")]
            bot.terminate()
            start = trio.current_time()
            assert await bot.wait_exit(DRAIN_SECONDS) == 0, bot.logs[-3000:]
            assert trio.current_time() - start < 3.0, "nothing was in flight: exit at once"
            # The last log line is out before the process ends.
            await wait_until(lambda: "stopped cleanly" in bot.logs, timeout=5)
        assert not fakes.whapi.sent and not responses_calls(fakes)

        async with open_bot_process(fakes, data, buffer_seconds=0.2) as bot:
            sent = await fakes.whapi.wait_sent(1, to=CHAT, timeout=10)
            await trio.sleep(0.6)  # a second (wrong) answer would come within this
            assert len(fakes.whapi.sent_to(CHAT)) == 1
            calls = responses_calls(fakes)
            assert len(calls) == 1
            assert user_text(calls[0]) == "quiero\nuna reserva"
            assert sent[0].body
            bot.terminate()
            assert await bot.wait_exit(DRAIN_SECONDS + MARGIN) == 0


@pytest.mark.parametrize("workers", ["config", "1"])
async def test_hypercorn_command_drains_mid_turn(tmp_path: Path, workers: str) -> None:
    """``config``: hypercorn.toml as is (the server in hypercorn's process), wabot sees SIGTERM
    first. ``1``: a master and a worker; the master gets SIGTERM (as Kubernetes sends it to
    PID 1), closes the listener, and the lifespan shutdown drains."""
    port = free_port()
    command = hypercorn_command(port) + (("-w", workers) if workers != "config" else ())
    async with open_fakes() as fakes:
        async with open_bot_process(
            fakes,
            tmp_path / "data",
            command=command,
            url=f"http://127.0.0.1:{port}",
            drain_seconds=DRAIN_SECONDS,
        ) as bot:
            fakes.openai.faults.delay("/v1/responses$", 1.5, times=1)
            response = await bot.post(payloads.webhook([payloads.text_message(USER, "hola")]))
            assert response.status_code == 200
            await wait_until(lambda: len(responses_calls(fakes)) == 1, timeout=5)
            bot.send_signal(signal.SIGTERM)
            signalled = trio.current_time()
            await readiness_after_signal(bot)
            if workers == "config":
                late = await bot.post(payloads.webhook([payloads.text_message(USER, "otra")]))
                assert late.status_code == 503
            sent = await fakes.whapi.wait_sent(1, to=CHAT, timeout=DRAIN_SECONDS)
            assert "hola" in (sent[0].body or "")
            code = await bot.wait_exit(DRAIN_SECONDS + MARGIN)
            assert code == 0, bot.logs[-3000:]
            assert trio.current_time() - signalled < DRAIN_SECONDS + MARGIN
        assert len(fakes.whapi.sent_to(CHAT)) == 1
        assert "actors stopped; flushing the store" in bot.logs
