"""What a new customer's first turn costs in durable writes on its reply path.

Three, each for a reason the code states (``UserActor.ensure_conversation``): the webhook's
ack (the message is journaled before the 200), the turn's intent before the model call (record,
conversation and input in one put, so a restart can resume instead of asking twice) and the
settle (the reply's record changes and the done marks in one write).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sandbox import payloads
from tests.harness import make_settings, open_bot, open_fakes, wait_until

USER = "573008800001"
CHAT = f"{USER}@s.whatsapp.net"


async def test_a_new_customers_first_turn_is_three_durable_writes(tmp_path: Path) -> None:
    async with open_fakes() as fakes, open_bot(fakes, make_settings(fakes, tmp_path)) as bot:
        store = bot.service.store
        writes: list[str] = []
        for name in ("put", "delete", "inbox_add", "inbox_done"):
            original = getattr(store, name)

            def counted(*args: Any, _name: str = name, _original: Any = original, **kw: Any) -> Any:
                writes.append(_name)
                return _original(*args, **kw)

            setattr(store, name, counted)
        await bot.post(payloads.webhook([payloads.text_message(USER, "hola")]))
        await fakes.whapi.wait_sent(1, to=CHAT)
        await wait_until(lambda: not store.pending_for(USER), timeout=5)
        assert writes == ["inbox_add", "put", "inbox_done"], writes
        record = store.get(USER)
        assert record is not None and record.conversation_id and record.pending_turn is None
