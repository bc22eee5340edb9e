"""One coherent answer when the customer keeps writing (issue 25, ``WABOT_SUPERSEDE``).

The rule of when a running turn gives way is a pure function (``buffering.may_supersede``),
tested with plain values first; then end to end through the fakes: the reply, and the
conversation on the fake OpenAI, which must hold the customer's messages once and one answer
after them, the answer the customer received.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import attrs
import trio

from actors.customer.buffering import Buffer, Timings, fitting, may_supersede
from actors.customer.events import InboundMessage
from sandbox import payloads
from sandbox.openai import item_texts
from tests.harness import (
    Bot,
    Fakes,
    beds24_on,
    make_settings,
    open_bot,
    open_fakes,
    wait_until,
)
from tests.process import ADMIN_TOKEN, open_bot_process
from tests.test_booking import CALENDAR, apartments, iso

USER = "573001234567"
CHAT = f"{USER}@s.whatsapp.net"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
#: The fake model's first answer takes this long, so the customer can write during it.
THINKING = 1.0

T = Timings(
    buffer_seconds=5.0,
    voice_buffer_seconds=8.0,
    typing_seconds=10.0,
    max_wait_seconds=30.0,
    max_buffered=50,
    max_buffered_chars=8000,
    supersede=True,
    supersede_max=2,
)
RESETS = frozenset({"reset", "/reset"})


def message(n: int, text: str = "y otra cosa") -> InboundMessage:
    return InboundMessage(
        f"m{n}", "573000000001", "573000000001@s.whatsapp.net", "Ana", "text", text, 0.0
    )


def waiting(*texts: str) -> Buffer:
    buffer = Buffer()
    for n, text in enumerate(texts):
        buffer.add(message(n, text), 100.0 + n, T)
    return buffer


def test_a_message_waiting_supersedes_a_turn_that_sent_nothing() -> None:
    assert may_supersede(waiting("y otra cosa"), T, superseded=0, committed=False)
    assert may_supersede(waiting("a", "b"), T, superseded=1, committed=False)


def test_nothing_waiting_or_a_committed_turn_is_never_superseded() -> None:
    assert not may_supersede(Buffer(), T, superseded=0, committed=False)
    assert not may_supersede(waiting("x"), T, superseded=0, committed=True)


def test_the_bound_holds_and_off_is_off() -> None:
    assert not may_supersede(waiting("x"), T, superseded=2, committed=False)
    one = attrs.evolve(T, supersede_max=1)
    assert may_supersede(waiting("x"), one, superseded=0, committed=False)
    assert not may_supersede(waiting("x"), one, superseded=1, committed=False)
    off = attrs.evolve(T, supersede=False)
    assert not may_supersede(waiting("x"), off, superseded=0, committed=False)


def test_a_resumed_turn_and_a_waiting_reset_are_left_alone() -> None:
    assert not may_supersede(waiting("x"), T, superseded=0, committed=False, resumed=True)
    buffer = waiting("x", " RESET ")
    assert not may_supersede(buffer, T, superseded=0, committed=False, reset_keywords=RESETS)
    assert may_supersede(buffer, T, superseded=0, committed=False)


def test_only_what_fits_beside_the_turn_under_the_caps_is_taken() -> None:
    small = attrs.evolve(T, max_buffered=3, max_buffered_chars=30)
    buffer = Buffer()
    for n, text in enumerate(("a" * 9, "b" * 9, "c" * 9)):
        buffer.add(message(n, text), 100.0 + n, small)
    # A turn of one message and 10 characters: room for one more message of 9 (and "\n").
    assert fitting(buffer, small, taken_messages=1, taken_chars=10) == 2
    assert fitting(buffer, small, taken_messages=2, taken_chars=10) == 1
    assert fitting(buffer, small, taken_messages=1, taken_chars=25) == 0
    assert not may_supersede(buffer, small, superseded=0, committed=False, taken_chars=25)
    assert may_supersede(buffer, small, superseded=0, committed=False, taken_chars=10)
    batch, ids = buffer.take_first(1)
    assert [m.text for m in batch] == ["a" * 9] and ids == ["m0"]
    assert [m.message_id for m in buffer.messages] == ["m1", "m2"] and buffer.chars == 18
    batch, ids = buffer.take_first(5)
    assert ids == ["m1", "m2"] and not buffer.messages and not buffer.ids


# -- end to end ------------------------------------------------------------------------------


def responses_calls(fakes: Fakes) -> list[Any]:
    return fakes.openai.calls_to("/v1/responses$", "POST")


def input_text(call: Any) -> str:
    """The customer's text in a /v1/responses request (context notes left out)."""
    return "".join(
        part["text"]
        for item in call.json["input"]
        if item.get("role") == "user" and isinstance(item.get("content"), list)
        for part in item["content"]
        if part["type"] == "input_text"
    )


def said(fakes: Fakes) -> list[tuple[str, str]]:
    """The only conversation's user and assistant messages, oldest first (notes left out)."""
    (items,) = fakes.openai.conversations.values()
    return [
        (item["role"], "\n".join(item_texts(item)))
        for item in items
        if item.get("type") == "message" and item.get("role") in {"user", "assistant"}
    ]


async def say(bot: Bot, text: str) -> None:
    response = await bot.post(payloads.webhook([payloads.text_message(USER, text)]))
    assert response.status_code == 200, response.text


async def inspect(bot: Bot) -> dict[str, Any]:
    response = await bot.http.get(f"{bot.url}/actors/{USER}", headers=AUTH)
    assert response.status_code == 200, response.text
    return response.json()


async def supersedes(bot: Bot, result: str = "done") -> float:
    wanted = f'wabot_supersedes_total{{result="{result}"}} '
    for line in (await bot.http.get(f"{bot.url}/metrics")).text.splitlines():
        if line.startswith(wanted):
            return float(line.split()[-1])
    return 0.0


def settled(bot: Bot) -> bool:
    cell = bot.service.supervisor.cell(USER)
    idle = cell is None or (cell.behavior is not None and cell.behavior.is_idle())
    return idle and not bot.service.store.pending_for(USER)


async def test_a_message_while_the_model_thinks_gets_one_answer_with_the_first(
    tmp_path: Path,
) -> None:
    async with open_fakes() as fakes:
        settings = make_settings(fakes, tmp_path, admin_token=ADMIN_TOKEN)
        async with open_bot(fakes, settings) as bot:
            fakes.openai.faults.delay(r"/responses$", THINKING, times=1)
            await say(bot, "primera")
            await wait_until(lambda: len(responses_calls(fakes)) == 1)
            await say(bot, "segunda")
            await trio.sleep(0.2)
            during = await inspect(bot)
            assert during["turn"] is not None and during["turn"]["superseded"] == 0
            sent = await fakes.whapi.wait_sent(1, to=CHAT, timeout=THINKING + 5)
            await wait_until(lambda: settled(bot))
            await trio.sleep(0.3)  # no second reply comes
            assert len(fakes.whapi.sent_to(CHAT)) == 1
            assert "primera" in (sent[0].body or "") and "segunda" in (sent[0].body or "")
            assert [input_text(c) for c in responses_calls(fakes)] == [
                "primera",
                "primera\nsegunda",
            ]
            # What the customer saw, and nothing else: their messages once, one answer after.
            assert said(fakes) == [
                ("user", "primera\nsegunda"),
                ("assistant", "Recibido: primera\nsegunda"),
            ]
            assert sent[0].body == "Recibido: primera\nsegunda"
            after = await inspect(bot)
            assert after["last_turn"]["outcome"] == "replied"
            assert after["last_turn"]["superseded"] == 1
            assert after["turns"] == 1
            assert await supersedes(bot) == 1 and await supersedes(bot, "kept") == 0
            assert bot.service.store.get(USER).pending_turn is None
        assert not fakes.openai.invalid_calls and not fakes.whapi.invalid_calls


async def test_a_message_after_the_reply_started_going_out_does_not_cut_it(
    tmp_path: Path,
) -> None:
    async with open_fakes() as fakes:
        settings = make_settings(fakes, tmp_path, admin_token=ADMIN_TOKEN)
        async with open_bot(fakes, settings) as bot:
            fakes.whapi.faults.delay(r"/messages/text$", THINKING, method="POST", times=1)
            await say(bot, "primera")
            await wait_until(lambda: fakes.whapi.calls_to(r"/messages/text$", "POST"))
            await say(bot, "segunda")
            sent = await fakes.whapi.wait_sent(2, to=CHAT, timeout=THINKING + 5)
            await wait_until(lambda: settled(bot))
            assert [m.body for m in sent] == ["Recibido: primera", "Recibido: segunda"]
            assert [input_text(c) for c in responses_calls(fakes)] == ["primera", "segunda"]
            assert said(fakes) == [
                ("user", "primera"),
                ("assistant", "Recibido: primera"),
                ("user", "segunda"),
                ("assistant", "Recibido: segunda"),
            ]
            info = await inspect(bot)
            assert info["turns"] == 2 and info["last_turn"]["superseded"] == 0
            assert await supersedes(bot) == 0


async def test_past_the_bound_the_turn_answers_and_the_rest_get_the_next_turn(
    tmp_path: Path,
) -> None:
    async with open_fakes() as fakes:
        settings = make_settings(fakes, tmp_path, admin_token=ADMIN_TOKEN, supersede_max=2)
        async with open_bot(fakes, settings) as bot:
            fakes.openai.faults.delay(r"/responses$", THINKING, times=3)
            await say(bot, "uno")
            for calls, text in ((1, "dos"), (2, "tres"), (3, "cuatro")):
                await wait_until(lambda n=calls: len(responses_calls(fakes)) == n, timeout=10)
                await say(bot, text)
            sent = await fakes.whapi.wait_sent(2, to=CHAT, timeout=4 * THINKING + 5)
            await wait_until(lambda: settled(bot))
            assert [m.body for m in sent] == ["Recibido: uno\ndos\ntres", "Recibido: cuatro"]
            assert [input_text(c) for c in responses_calls(fakes)] == [
                "uno",
                "uno\ndos",
                "uno\ndos\ntres",
                "cuatro",
            ]
            assert said(fakes) == [
                ("user", "uno\ndos\ntres"),
                ("assistant", "Recibido: uno\ndos\ntres"),
                ("user", "cuatro"),
                ("assistant", "Recibido: cuatro"),
            ]
            info = await inspect(bot)
            assert info["turns"] == 2 and info["last_turn"]["superseded"] == 0
            assert await supersedes(bot) == 2


async def test_off_keeps_one_answer_per_turn(tmp_path: Path) -> None:
    async with open_fakes() as fakes:
        settings = make_settings(fakes, tmp_path, admin_token=ADMIN_TOKEN, supersede=False)
        async with open_bot(fakes, settings) as bot:
            fakes.openai.faults.delay(r"/responses$", THINKING, times=1)
            await say(bot, "primera")
            await wait_until(lambda: len(responses_calls(fakes)) == 1)
            await say(bot, "segunda")
            sent = await fakes.whapi.wait_sent(2, to=CHAT, timeout=THINKING + 5)
            await wait_until(lambda: settled(bot))
            assert [m.body for m in sent] == ["Recibido: primera", "Recibido: segunda"]
            assert [input_text(c) for c in responses_calls(fakes)] == ["primera", "segunda"]
            assert await supersedes(bot) == 0


async def test_an_answer_that_cannot_be_taken_back_is_sent_and_the_rest_wait(
    tmp_path: Path,
) -> None:
    """OpenAI refuses the deletes: the conversation keeps the first answer, so the customer
    gets it, and the later message its own turn (as without supersede)."""
    async with open_fakes() as fakes:
        settings = make_settings(fakes, tmp_path, admin_token=ADMIN_TOKEN)
        async with open_bot(fakes, settings) as bot:
            fakes.openai.faults.delay(r"/responses$", THINKING, times=1)
            fakes.openai.faults.add(r"/items/", method="DELETE", status=400, times=math.inf)
            await say(bot, "primera")
            await wait_until(lambda: len(responses_calls(fakes)) == 1)
            await say(bot, "segunda")
            sent = await fakes.whapi.wait_sent(2, to=CHAT, timeout=THINKING + 5)
            await wait_until(lambda: settled(bot))
            assert [m.body for m in sent] == ["Recibido: primera", "Recibido: segunda"]
            assert said(fakes) == [
                ("user", "primera"),
                ("assistant", "Recibido: primera"),
                ("user", "segunda"),
                ("assistant", "Recibido: segunda"),
            ]
            assert await supersedes(bot, "kept") == 1 and await supersedes(bot) == 0
            assert (await inspect(bot))["turns"] == 2


def inspect_turns(bot: Bot) -> int:
    cell = bot.service.supervisor.cell(USER)
    actor = getattr(cell.behavior, "inner", cell.behavior) if cell is not None else None
    return actor.turns if actor is not None else 0


def types_said(fakes: Fakes) -> list[str]:
    """The only conversation's items as ``type`` (or ``type:role``), notes left out."""
    (items,) = fakes.openai.conversations.values()
    return [
        f"{item['type']}:{item['role']}" if item["type"] == "message" else item["type"]
        for item in items
        if item.get("role") != "developer"
    ]


async def test_a_turn_whose_model_asked_for_a_tool_gives_way_before_the_tool_runs(
    tmp_path: Path,
) -> None:
    """The abandoned answer was a function call: it is deleted with its input (a call left
    without its output would break the conversation), and the tool runs once, for all."""
    async with open_fakes() as fakes:
        apartments(fakes)
        settings = make_settings(fakes, tmp_path, admin_token=ADMIN_TOKEN, **beds24_on(fakes))
        async with open_bot(fakes, settings) as bot:
            fakes.openai.faults.delay(r"/responses$", THINKING, times=1)
            await say(bot, f"¿disponibilidad del {iso(3)} al {iso(5)}?")
            await wait_until(lambda: len(responses_calls(fakes)) == 1)
            await say(bot, "para dos personas")
            await wait_until(lambda: settled(bot) and bool(fakes.whapi.sent_to(CHAT)), timeout=10)
            answer = "\n".join(m.body or "" for m in fakes.whapi.sent_to(CHAT))
            assert "Apartaestudio 715-C" in answer and "Recibido" not in answer
            assert types_said(fakes) == [
                "message:user",
                "function_call",
                "function_call_output",
                "message:assistant",
            ]
            assert said(fakes)[0] == (
                "user",
                f"¿disponibilidad del {iso(3)} al {iso(5)}?\npara dos personas",
            )
            info = await inspect(bot)
            assert info["turns"] == 1 and info["last_turn"]["superseded"] == 1
            assert info["last_turn"]["tools"] == ["check_availability"]
        assert not fakes.openai.invalid_calls
        assert all(c.status == 200 for c in responses_calls(fakes))


async def test_a_message_while_a_tool_runs_waits_for_the_next_turn(tmp_path: Path) -> None:
    async with open_fakes() as fakes:
        apartments(fakes)
        fakes.beds24.faults.delay(CALENDAR, THINKING, times=1)
        settings = make_settings(fakes, tmp_path, admin_token=ADMIN_TOKEN, **beds24_on(fakes))
        async with open_bot(fakes, settings) as bot:
            await say(bot, f"¿disponibilidad del {iso(3)} al {iso(5)}?")
            await wait_until(lambda: bool(fakes.beds24.calls_to(CALENDAR)), timeout=5)
            await say(bot, "segunda")
            await wait_until(lambda: inspect_turns(bot) == 2 and settled(bot), timeout=10)
            *answer, second = [m.body or "" for m in fakes.whapi.sent_to(CHAT)]
            assert "Apartaestudio 715-C" in "\n".join(answer)
            assert second == "Recibido: segunda"
            assert await supersedes(bot) == 0


async def test_killed_right_after_a_supersede_the_next_process_loses_and_repeats_nothing(
    tmp_path: Path,
) -> None:
    """The stored intent names the superseding ask (both messages, their joined input): the
    next process resumes it, recovers its answer, and asks nothing again."""
    superseding = trio.Event()

    async def slow(request: Any) -> str:
        if request.last_user_text == "primera\nsegunda":
            superseding.set()
        await trio.sleep(THINKING)
        return f"Respuesta a {request.last_user_text}"

    timings = {"buffer_seconds": 0.1, "max_wait_seconds": 1.0}
    async with open_fakes() as fakes:
        fakes.openai.responder = slow
        async with open_bot_process(fakes, tmp_path / "data", **timings) as bot:
            hook = payloads.webhook([payloads.text_message(USER, "primera")])
            assert (await bot.post(hook)).status_code == 200
            await wait_until(lambda: len(responses_calls(fakes)) == 1, timeout=10)
            hook = payloads.webhook([payloads.text_message(USER, "segunda")])
            assert (await bot.post(hook)).status_code == 200
            with trio.fail_after(10):
                await superseding.wait()
            bot.kill()
            assert await bot.wait_exit(10) == -9
            assert "gives way" in bot.logs
        await trio.sleep(THINKING + 0.5)  # the superseding response completes on the fake
        async with open_bot_process(fakes, tmp_path / "data", **timings) as bot:
            await fakes.whapi.wait_sent(1, to=CHAT, timeout=15)
            await trio.sleep(0.5)
            assert "resuming turn" in bot.logs
        assert [m.body for m in fakes.whapi.sent_to(CHAT)] == ["Respuesta a primera\nsegunda"]
        assert said(fakes) == [
            ("user", "primera\nsegunda"),
            ("assistant", "Respuesta a primera\nsegunda"),
        ]
        # Recovered from the conversation, not asked again.
        asked = [input_text(c) for c in responses_calls(fakes)]
        assert asked == ["primera", "primera\nsegunda"]
