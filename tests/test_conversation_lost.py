"""A stored conversation OpenAI no longer knows is replaced, and the turn still gets its answer.

Production meets a 404 for ``conv_…`` after a conversation is deleted or expires, or when the
OpenAI key moves to another project; the sandbox met it after every restart, because its fake
forgot conversations. Both halves are tested here over real HTTP: the bot's recovery against
the fake, and the fake keeping its conversations in the data directory across a restart.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import httpx
import trio

from actors.settings import Settings
from gateway.server import SANDBOX_OPENAI_FILE, run_server
from sandbox import payloads
from sandbox.openai import FakeOpenAI
from tests.harness import FAST, OPENAI_KEY, make_settings, open_bot, open_fakes, wait_until

USER = "573009998877"
CHAT = f"{USER}@s.whatsapp.net"


def developer_notes(call: Any) -> list[str]:
    return [item["content"] for item in call.json["input"] if item.get("role") == "developer"]


async def metric(http: httpx.AsyncClient, url: str, name: str) -> float:
    for line in (await http.get(f"{url}/metrics")).text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


async def test_a_deleted_conversation_is_replaced_and_the_same_turn_answered(
    tmp_path: Path,
) -> None:
    async with open_fakes() as fakes:
        settings = make_settings(fakes, tmp_path)
        async with open_bot(fakes, settings) as bot:
            await bot.post(payloads.webhook([payloads.text_message(USER, "hola")]))
            await fakes.whapi.wait_sent(1, to=CHAT)
            lost = bot.service.store.get(USER).conversation_id
            deleted = await bot.http.delete(
                f"{fakes.openai_url}/conversations/{lost}",
                headers={"Authorization": f"Bearer {OPENAI_KEY}"},
            )
            assert deleted.status_code == 200

            await bot.post(payloads.webhook([payloads.text_message(USER, "sigo aquí")]))
            await fakes.whapi.wait_sent(2, to=CHAT)
            replies = [m.body for m in fakes.whapi.sent_to(CHAT)]
            assert replies[1] == "Recibido: sigo aquí"
            assert settings.fallback_text not in replies
            fresh = bot.service.store.get(USER).conversation_id
            assert fresh and fresh != lost
            # The new conversation holds this turn, seeded with what the record remembers.
            items = fakes.openai.conversations[fresh]
            assert any("se perdió" in str(item.get("content")) for item in items)
            last = [c for c in fakes.openai.calls if c.path == "/v1/responses"][-1]
            assert last.json["conversation"] == fresh
            assert "se perdió" in developer_notes(last)[0]
            assert await metric(bot.http, bot.url, "wabot_conversations_lost_total") == 1
            await wait_until(lambda: bot.service.store.stats().pending == 0)


async def test_a_human_agents_note_on_a_lost_conversation_lands_in_a_fresh_one(
    tmp_path: Path,
) -> None:
    async with open_fakes() as fakes:
        settings = make_settings(fakes, tmp_path)
        async with open_bot(fakes, settings) as bot:
            await bot.post(payloads.webhook([payloads.text_message(USER, "hola")]))
            await fakes.whapi.wait_sent(1, to=CHAT)
            lost = bot.service.store.get(USER).conversation_id
            fakes.openai._conversations.pop(lost)
            agent = payloads.text_message(USER, "Le atiendo yo, un momento", from_me=True)
            await bot.post(payloads.webhook([agent]))

            def noted() -> bool:
                fresh = bot.service.store.get(USER).conversation_id
                items = fakes.openai.conversations.get(fresh or "", [])
                return fresh != lost and any("Le atiendo yo" in str(i) for i in items)

            await wait_until(noted)


async def test_the_fake_keeps_its_conversations_in_its_state_file(tmp_path: Path) -> None:
    state = tmp_path / "openai-state.json"
    headers = {"Authorization": f"Bearer {OPENAI_KEY}"}
    body = {"items": [{"type": "message", "role": "user", "content": "hola"}]}
    async with trio.open_nursery() as nursery, httpx.AsyncClient(headers=headers) as http:
        fake = FakeOpenAI(OPENAI_KEY, state_file=state)
        url = await nursery.start(fake.serve)
        created = (await http.post(f"{url}/conversations", json=body)).json()
        nursery.cancel_scope.cancel()
    async with trio.open_nursery() as nursery, httpx.AsyncClient(headers=headers) as http:
        again = FakeOpenAI(OPENAI_KEY, state_file=state)
        url = await nursery.start(again.serve)
        items = (await http.get(f"{url}/conversations/{created['id']}/items")).json()
        assert [item["content"][0]["text"] for item in items["data"]] == ["hola"]
        nursery.cancel_scope.cancel()


async def test_a_restarted_sandbox_still_answers_from_the_same_conversation(
    tmp_path: Path,
) -> None:
    """The operator's report: say, restart ``make run``, say again -> an answer, not apologies."""
    settings = Settings(host="127.0.0.1", port=0, data_dir=tmp_path / "data", **FAST)
    assert settings.sandbox
    conversations = []
    for text in ("hola", "otra vez"):
        stop = trio.Event()
        async with trio.open_nursery() as nursery, httpx.AsyncClient(timeout=10) as http:
            running = await nursery.start(partial(run_server, settings, stop=stop))
            whapi = running.sandbox.whapi
            response = await http.post(
                f"{running.url}/hook", json=payloads.webhook([payloads.text_message(USER, text)])
            )
            assert response.status_code == 200
            await whapi.wait_sent(1, to=CHAT)
            assert whapi.sent_to(CHAT)[0].body == f"Recibido: {text}"
            conversations.append(running.service.store.get(USER).conversation_id)
            stop.set()
    assert conversations[0] == conversations[1]
    assert (settings.data_dir / SANDBOX_OPENAI_FILE).is_file()
