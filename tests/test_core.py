"""The actor core end to end: webhooks in through real HTTP, replies out through the fakes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio

from actors.runtime.mailbox import Mailbox
from sandbox import payloads
from tests.harness import Fakes, make_settings, open_bot, open_fakes, wait_until

USER = "573001234567"
CHAT = f"{USER}@s.whatsapp.net"


def responses_calls(fakes: Fakes) -> list[Any]:
    return [c for c in fakes.openai.calls if c.method == "POST" and c.path == "/v1/responses"]


def input_text(call: Any) -> str:
    """The customer's text in a /v1/responses request (context notes left out)."""
    return "".join(
        part["text"]
        for item in call.json["input"]
        if item.get("role") == "user" and isinstance(item.get("content"), list)
        for part in item["content"]
        if part["type"] == "input_text"
    )


async def test_burst_of_three_gives_one_turn_in_order(tmp_path: Path) -> None:
    async with open_fakes() as fakes, open_bot(fakes, make_settings(fakes, tmp_path)) as bot:
        for text in ("hola", "quiero reservar", "para dos personas"):
            response = await bot.post(payloads.webhook([payloads.text_message(USER, text)]))
            assert response.status_code == 200
        sent = await fakes.whapi.wait_sent(1, to=CHAT)
        await trio.sleep(0.4)
        calls = responses_calls(fakes)
        assert len(calls) == 1
        assert input_text(calls[0]) == "hola\nquiero reservar\npara dos personas"
        assert len(fakes.whapi.sent_to(CHAT)) == len(sent) == 1
        assert "para dos personas" in sent[0].body
        assert not fakes.whapi.invalid_calls and not fakes.openai.invalid_calls


async def test_a_first_message_is_parsed_once_on_its_way_in(tmp_path: Path) -> None:
    """The gateway parses it, journals it and tells the new actor; the actor's reload of its
    user's pending inbox at activation must not parse it a second time."""
    async with open_fakes() as fakes, open_bot(fakes, make_settings(fakes, tmp_path)) as bot:
        deps = bot.service.deps
        parse, reparsed = deps.parse, []

        def counting(raw: dict[str, Any]) -> Any:
            reparsed.append(raw.get("id"))
            return parse(raw)

        deps.parse = counting
        response = await bot.post(payloads.webhook([payloads.text_message(USER, "hola")]))
        assert response.status_code == 200
        sent = await fakes.whapi.wait_sent(1, to=CHAT)
        assert "hola" in input_text(responses_calls(fakes)[0]) and len(sent) == 1
        assert reparsed == []


async def test_typing_extends_the_window_but_the_cap_holds(tmp_path: Path) -> None:
    async with open_fakes() as fakes:
        settings = make_settings(
            fakes, tmp_path, buffer_seconds=0.1, typing_seconds=0.5, max_wait_seconds=1.2
        )
        async with open_bot(fakes, settings) as bot:
            await bot.post(payloads.webhook([payloads.text_message(USER, "primero")]))
            start = trio.current_time()
            # Typing keeps arriving: each one pushes the answer 0.5 s later...
            while trio.current_time() - start < 2.0 and not fakes.whapi.sent_to(CHAT):
                await bot.post(payloads.presence_webhook([payloads.presence(USER, "typing")]))
                await trio.sleep(0.1)
            sent_at = trio.current_time() - start
            # ...but never past the hard cap (1.2 s after the first message).
            assert fakes.whapi.sent_to(CHAT), "the cap did not hold"
            assert 0.5 < sent_at < 1.2 + 0.8
            assert len(responses_calls(fakes)) == 1


async def test_typing_alone_delays_the_answer(tmp_path: Path) -> None:
    async with open_fakes() as fakes:
        settings = make_settings(fakes, tmp_path, buffer_seconds=0.1, typing_seconds=0.6)
        async with open_bot(fakes, settings) as bot:
            await bot.post(payloads.webhook([payloads.text_message(USER, "hola")]))
            await trio.sleep(0.05)
            await bot.post(payloads.presence_webhook([payloads.presence(USER, "typing")]))
            await trio.sleep(0.35)
            assert not responses_calls(fakes), "answered while the customer was still typing"
            await fakes.whapi.wait_sent(1, to=CHAT)


async def test_message_mid_turn_is_answered_in_a_second_turn(tmp_path: Path) -> None:
    """With ``WABOT_SUPERSEDE`` off (on, one turn answers both: tests/test_supersede.py)."""
    async with open_fakes() as fakes:
        settings = make_settings(fakes, tmp_path, supersede=False)
        async with open_bot(fakes, settings) as bot:
            fakes.openai.faults.delay("/v1/responses", 0.6, times=1)
            await bot.post(payloads.webhook([payloads.text_message(USER, "primera")]))
            await wait_until(lambda: len(responses_calls(fakes)) == 1)
            await bot.post(payloads.webhook([payloads.text_message(USER, "segunda")]))
            await fakes.whapi.wait_sent(2, to=CHAT)
            calls = responses_calls(fakes)
            assert [input_text(c) for c in calls] == ["primera", "segunda"]
            assert fakes.openai.max_concurrent_per_conversation == 1


async def test_fifty_users_get_fifty_conversations(tmp_path: Path) -> None:
    # A window wide enough that each user's two messages land in one burst on a loaded CI box.
    async with (
        open_fakes() as fakes,
        open_bot(
            fakes, make_settings(fakes, tmp_path, buffer_seconds=1.5, max_wait_seconds=5.0)
        ) as bot,
    ):
        users = [f"5730000{n:05d}" for n in range(50)]
        async with trio.open_nursery() as nursery:
            for user in users:
                for text in ("hola", "info"):
                    nursery.start_soon(
                        bot.post, payloads.webhook([payloads.text_message(user, f"{text} {user}")])
                    )
        await fakes.whapi.wait_sent(50, timeout=15)
        await trio.sleep(0.3)
        assert {m.to for m in fakes.whapi.sent} == {f"{u}@s.whatsapp.net" for u in users}
        assert len(fakes.whapi.sent) == 50
        assert len(fakes.openai.conversations) == 50
        errors = [c for c in fakes.openai.calls if c.status == 400]
        assert not errors, errors


async def test_duplicated_webhook_gives_one_reply(tmp_path: Path) -> None:
    async with open_fakes() as fakes, open_bot(fakes, make_settings(fakes, tmp_path)) as bot:
        body = payloads.webhook([payloads.text_message(USER, "hola")])
        for _ in range(3):
            assert (await bot.post(body)).status_code == 200
        await fakes.whapi.wait_sent(1, to=CHAT)
        await trio.sleep(0.5)
        assert (await bot.post(body)).status_code == 200
        await trio.sleep(0.4)
        assert len(fakes.whapi.sent_to(CHAT)) == 1
        assert len(responses_calls(fakes)) == 1


async def test_echo_of_our_own_send_gives_no_reply(tmp_path: Path) -> None:
    async with open_fakes() as fakes, open_bot(fakes, make_settings(fakes, tmp_path)) as bot:
        await bot.post(payloads.webhook([payloads.text_message(USER, "hola")]))
        await fakes.whapi.wait_sent(1, to=CHAT)
        # The fake posts the from_me/source=api echo back to /hook, as Whapi does.
        await wait_until(lambda: bot.service.gateway.counters.ignored.get("echo", 0) >= 1)
        await trio.sleep(0.5)
        assert len(fakes.whapi.sent_to(CHAT)) == 1
        assert len(responses_calls(fakes)) == 1


async def test_group_message_gives_no_reply(tmp_path: Path) -> None:
    async with open_fakes() as fakes, open_bot(fakes, make_settings(fakes, tmp_path)) as bot:
        group = payloads.text_message(USER, "hola grupo", chat_id="120363000000000000@g.us")
        assert (await bot.post(payloads.webhook([group]))).status_code == 200
        await trio.sleep(0.5)
        assert not fakes.whapi.sent
        assert not responses_calls(fakes)
        assert bot.service.gateway.counters.ignored.get("group") == 1


async def test_restart_keeps_the_conversation(tmp_path: Path) -> None:
    async with open_fakes() as fakes:
        settings = make_settings(fakes, tmp_path)
        async with open_bot(fakes, settings) as bot:
            await bot.post(payloads.webhook([payloads.text_message(USER, "hola")]))
            await fakes.whapi.wait_sent(1, to=CHAT)
        snapshot = json.loads((tmp_path / "threads-data.json").read_text())
        conversation = snapshot[USER]["conversationId"]
        assert conversation.startswith("conv_")
        async with open_bot(fakes, settings) as bot:
            await bot.post(payloads.webhook([payloads.text_message(USER, "sigo aquí")]))
            await fakes.whapi.wait_sent(2, to=CHAT)
        calls = responses_calls(fakes)
        assert [c.json["conversation"] for c in calls] == [conversation, conversation]
        assert len(fakes.openai.conversations) == 1


class CrashOn:
    """Wraps a user actor so that a message with a given text raises inside the actor."""

    def __init__(self, inner: Any, text: str) -> None:
        self.inner = inner
        self.text = text

    async def run(self, mailbox: Mailbox) -> None:
        inner_box = Mailbox(64)

        async def forward() -> None:
            try:
                async for message in mailbox:
                    if getattr(message, "text", None) == self.text:
                        raise RuntimeError("injected crash")
                    await inner_box.send(message)
            finally:
                inner_box.close()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(forward)
            await self.inner.run(inner_box)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_a_crashing_actor_is_restarted_and_others_are_unaffected(tmp_path: Path) -> None:
    other = "573009876543"
    async with open_fakes() as fakes:
        settings = make_settings(fakes, tmp_path)
        wrap = lambda key, cell, actor: CrashOn(actor, "boom")  # noqa: E731
        async with open_bot(fakes, settings, wrap_behavior=wrap) as bot:
            await bot.post(payloads.webhook([payloads.text_message(USER, "boom")]))
            await bot.post(payloads.webhook([payloads.text_message(other, "hola")]))
            await fakes.whapi.wait_sent(1, to=f"{other}@s.whatsapp.net")
            await wait_until(lambda: bot.service.supervisor.counters.restarts >= 1)
            # Nothing is lost: the restarted actor reloads the unanswered message from the
            # durable inbox (this injected fault only fires on mailbox delivery) ...
            await fakes.whapi.wait_sent(1, to=CHAT, timeout=5)
            assert any("boom" in input_text(c) for c in responses_calls(fakes))
            # ... and it keeps answering the user afterwards.
            await bot.post(payloads.webhook([payloads.text_message(USER, "hola otra vez")]))
            await fakes.whapi.wait_sent(2, to=CHAT, timeout=5)
            assert "hola otra vez" in input_text(responses_calls(fakes)[-1])
            assert bot.service.supervisor.counters.restarts == 1


async def test_idle_actor_stops_and_respawns(tmp_path: Path) -> None:
    async with open_fakes() as fakes:
        settings = make_settings(fakes, tmp_path, idle_seconds=0.3)
        async with open_bot(fakes, settings) as bot:
            supervisor = bot.service.supervisor
            await bot.post(payloads.webhook([payloads.text_message(USER, "hola")]))
            await fakes.whapi.wait_sent(1, to=CHAT)
            assert USER in supervisor
            await wait_until(lambda: USER not in supervisor, timeout=3)
            assert supervisor.counters.idle_stops >= 1
            await bot.post(payloads.webhook([payloads.text_message(USER, "volví")]))
            await fakes.whapi.wait_sent(2, to=CHAT)
            assert supervisor.counters.spawns == 2
            # The presence subscription is remembered: the new activation does not repeat it.
            subscribes = [
                c
                for c in fakes.whapi.calls
                if c.method == "POST" and c.path == f"/presences/{USER}"
            ]
            assert len(subscribes) == 1
            assert bot.service.store.get(USER).presence_subscribed_at is not None


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({"secret": "wrong"}, 401),
        ({"secret": None}, 401),
        ({"raw": b"{not json"}, 400),
        ({"raw": b"x" * (64 * 1024 + 1)}, 413),
    ],
)
async def test_bad_input_gets_a_clear_status(
    tmp_path: Path, kwargs: dict[str, Any], status: int
) -> None:
    async with open_fakes() as fakes:
        settings = make_settings(fakes, tmp_path, max_body_bytes=64 * 1024)
        async with open_bot(fakes, settings) as bot:
            body = payloads.webhook([payloads.text_message(USER, "hola")])
            response = await bot.post(body, **kwargs)
            assert response.status_code == status
            await trio.sleep(0.3)
            assert not fakes.whapi.sent
            assert bot.service.store.stats().pending == 0
