"""Crash loops: a user whose messages always make the actor raise.

Restarts are capped (WABOT_RESTART_LIMIT within WABOT_RESTART_WINDOW_SECONDS), the user gets
exactly one fallback and the actor is parked for WABOT_PARK_SECONDS; their webhooks are still
acknowledged at once, and every other user is answered as usual throughout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import trio

from actors.runtime.mailbox import Mailbox
from actors.runtime.supervisor import Cell
from sandbox import payloads
from tests.chaos_helpers import scale
from tests.harness import make_settings, open_bot, open_fakes, wait_until

POISONED = "573005500001"
CHAT = f"{POISONED}@s.whatsapp.net"


class AlwaysCrash:
    """Wraps the user actor of one key: it raises on start when it has work, and on any event."""

    #: When each run of the poisoned actor started, and when it was given up (trio's clock),
    #: shared by every incarnation.
    runs: ClassVar[list[float]] = []
    give_ups: ClassVar[list[float]] = []

    def __init__(self, inner: Any, store: Any) -> None:
        self.inner = inner
        self.store = store

    async def give_up(self, exc: Exception) -> None:
        AlwaysCrash.give_ups.append(trio.current_time())
        await self.inner.give_up(exc)

    async def run(self, mailbox: Mailbox) -> None:
        AlwaysCrash.runs.append(trio.current_time())
        if self.store().pending_for(POISONED):
            raise RuntimeError("poisoned user (replay)")
        async for _message in mailbox:
            raise RuntimeError("poisoned user")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_crash_loop_is_capped_parked_and_isolated(tmp_path: Path) -> None:
    others = [f"5730056{n:05d}" for n in range(scale(8, 40))]
    holder: dict[str, Any] = {}
    AlwaysCrash.runs.clear()
    AlwaysCrash.give_ups.clear()

    def wrap(key: str, cell: Cell, actor: Any) -> Any:
        if key != POISONED:
            return actor
        return AlwaysCrash(actor, lambda: holder["bot"].service.store)

    async with open_fakes() as fakes:
        settings = make_settings(
            fakes,
            tmp_path,
            restart_limit=3,
            restart_window_seconds=5.0,
            park_seconds=6.0,
            mailbox_size=8,
        )
        async with open_bot(fakes, settings, wrap_behavior=wrap) as bot:
            holder["bot"] = bot
            supervisor = bot.service.supervisor
            await bot.post(payloads.webhook([payloads.text_message(POISONED, "hola")]))
            for user in others:
                await bot.post(payloads.webhook([payloads.text_message(user, "hola")]))
            await wait_until(lambda: supervisor.counters.give_ups == 1, timeout=5)
            cell = supervisor.cell(POISONED)
            assert cell is not None
            # Parked: no run for park_seconds after the give-up, and the phase says so while
            # it lasts. (Judged by when things happened, not by what is seen at one moment: a
            # test process starved for the whole park on a loaded machine sees it over.)
            [gave_up] = AlwaysCrash.give_ups
            park = settings.park_seconds
            assert len([r for r in AlwaysCrash.runs if r <= gave_up]) == settings.restart_limit + 1
            if trio.current_time() < gave_up + settings.park_seconds:
                assert cell.phase == "parked"
            [fallback] = await fakes.whapi.wait_sent(1, to=CHAT)
            assert fallback.body == settings.fallback_text
            # What it was waiting for is settled (no replay loop after the park).
            await wait_until(lambda: not bot.service.store.pending_for(POISONED))

            # Parked: more messages (more than its mailbox holds) are still acknowledged fast.
            slowest = 0.0
            for n in range(3 * settings.mailbox_size):
                start = trio.current_time()
                body = payloads.webhook([payloads.text_message(POISONED, f"otra vez {n}")])
                assert (await bot.post(body)).status_code == 200
                slowest = max(slowest, trio.current_time() - start)
            # Not held by the full mailbox: a blocked delivery would wait its whole timeout.
            blocked = bot.service.gateway.delivery_timeout
            assert slowest < blocked / 2, f"a webhook for a parked user took {slowest:.2f}s"
            assert cell.mailbox_depth <= settings.mailbox_size

            # Everyone else is answered as usual, during the park too.
            for user in others:
                await fakes.whapi.wait_sent(1, to=user, timeout=10)
            late = f"5730057{0:05d}"
            await bot.post(payloads.webhook([payloads.text_message(late, "hola")]))
            await fakes.whapi.wait_sent(1, to=late, timeout=10)
            parked_sends = [m for m in fakes.whapi.sent_to(CHAT) if m.at < gave_up + park]
            assert len(parked_sends) == 1, "exactly one fallback while parked"

            # After the park the actor runs again and crashes again on the waiting messages:
            # capped again, one more fallback for the new burst, still nobody else affected.
            await wait_until(lambda: supervisor.counters.give_ups == 2, timeout=20)
            after = [r for r in AlwaysCrash.runs if r > gave_up]
            assert after and after[0] >= gave_up + settings.park_seconds, "parked for the park"
            await fakes.whapi.wait_sent(2, to=CHAT)
            assert len(fakes.whapi.sent_to(CHAT)) == 2
            await wait_until(lambda: not bot.service.store.pending_for(POISONED))
            assert (await bot.http.get(f"{bot.url}/readyz")).status_code == 200
