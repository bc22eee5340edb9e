"""What a finished request or a retired actor leaves behind is freed by reference counting.

Objects caught in a reference cycle wait for the cycle collector, and those that survive the
young generations are freed only by a full collection, whose pause grows with them. These
tests switch the collector off, run real traffic over loopback, and look for what is left.
The OpenAI SDK's responses and retired actors must leave nothing. httpx's own responses hold
themselves (the response and its stream refer to each other), which the Whapi client accepts
(bench/RESULTS.md, issue 20: no growth at 10k customers): such a response must be held by
nothing else, so one collection frees it.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import httpx2
import trio

from actors.customer.actor import UserActor
from actors.runtime.mailbox import Mailbox
from actors.runtime.supervisor import Cell, RuntimeConfig, Supervisor
from actors.upstream.model import ModelClient
from actors.upstream.retry import RetryPolicy
from actors.upstream.whapi import WhapiClient
from sandbox.payloads import text_message, webhook
from tests.harness import OPENAI_KEY, WHAPI_TOKEN, make_settings, open_bot, open_fakes, wait_until

POLICY = RetryPolicy(attempts=1, base_seconds=0.01, max_seconds=0.01)


@contextmanager
def collector_off() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def user_actors() -> list[UserActor]:
    return [o for o in gc.get_objects() if isinstance(o, UserActor)]


def responses_to(*base_urls: str) -> list[Any]:
    """Live httpx/httpx2 responses to requests under ``base_urls``."""
    return [
        o
        for o in gc.get_objects()
        if isinstance(o, httpx.Response | httpx2.Response)
        and str(o.request.url).startswith(base_urls)
    ]


async def test_upstream_responses_are_freed_once_read() -> None:
    async with open_fakes() as fakes:
        whapi = WhapiClient(base_url=fakes.whapi_url, token=WHAPI_TOKEN, timeout=5, policy=POLICY)
        model = ModelClient(
            api_key=OPENAI_KEY,
            base_url=fakes.openai_url,
            model="gpt-4o-mini",
            instructions="Eres un asistente.",
            timeout=5,
            policy=POLICY,
        )
        try:
            with collector_off():
                for n in range(10):
                    sent = await whapi.send_text("573001112233@s.whatsapp.net", f"hola {n}")
                    assert sent.message_id
                    conversation = await model.create_conversation("573001112233")
                    await model.add_items(conversation, [{"role": "user", "content": "nota"}])
                    reply = await model.respond(
                        conversation_id=conversation,
                        input_items=[{"role": "user", "content": f"hola {n}"}],
                        user_id="573001112233",
                    )
                    assert reply.text
                assert responses_to(fakes.openai_url) == []
                # httpx's response <-> stream cycle, one per send; garbage, held by nothing
                # live, so one collection frees them all.
                assert len(responses_to(fakes.whapi_url)) == 10
                gc.collect()
                assert responses_to(fakes.whapi_url) == []
        finally:
            await whapi.aclose()
            await model.aclose()


class Idle:
    """A behavior that only drains its mailbox."""

    def __init__(self, key: str, cell: Cell) -> None:
        self.cell = cell  # as the user actor does: the behavior holds its cell

    async def run(self, mailbox: Mailbox) -> None:
        async for _message in mailbox:
            pass

    def is_idle(self) -> bool:
        return True

    async def give_up(self, error: BaseException) -> None:
        return None


async def test_a_retired_behavior_is_freed_with_its_task() -> None:
    supervisor = Supervisor(Idle, RuntimeConfig(idle_seconds=0.05))
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        with collector_off():
            supervisor.activate("573001112233")
            await wait_until(lambda: supervisor.cell("573001112233") is not None)
            cell = supervisor.cell("573001112233")
            assert cell is not None
            await wait_until(lambda: cell.behavior is not None)
            behavior = weakref.ref(cell.behavior)
            await wait_until(lambda: "573001112233" not in supervisor, timeout=5)
            await cell.done.wait()
            assert behavior() is None
        nursery.cancel_scope.cancel()


async def test_a_customer_s_actor_is_freed_when_it_idles_out(tmp_path: Path) -> None:
    async with open_fakes() as fakes:
        settings = make_settings(fakes, tmp_path / "data", buffer_seconds=0.05, idle_seconds=0.3)
        async with open_bot(fakes, settings) as bot:
            supervisor = bot.service.supervisor
            with collector_off():
                for n in range(5):
                    user = f"57300111{n:04d}"
                    response = await bot.post(webhook([text_message(user, "hola")]))
                    assert response.status_code == 200
                await wait_until(lambda: len(fakes.whapi.calls_to("/messages/text")) >= 5)
                await wait_until(lambda: len(supervisor) == 0, timeout=10)
                # A retired actor leaves the count at once; its task ends a moment later.
                with trio.move_on_after(5):
                    while user_actors():
                        await trio.sleep(0.05)
                assert user_actors() == []
