"""The model budget: per-minute buckets, fair order between customers, holds and headers.

trio's MockClock with autojump makes the minutes pass at once and exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from actors.upstream.budget import ModelBudget
from sandbox import payloads
from tests.chaos_helpers import responses_calls
from tests.harness import make_settings, open_bot, open_fakes


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


async def test_without_limits_every_slot_is_granted_at_once() -> None:
    budget = ModelBudget()
    for _ in range(100):
        async with budget.slot("a", 10_000) as slot:
            assert slot.waited == 0
    assert budget.granted == 100


async def test_requests_per_minute_pace_the_calls(autojump_clock: trio.testing.MockClock) -> None:
    budget = ModelBudget(requests_per_minute=60)
    granted_at: list[float] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(budget.run)
        start = trio.current_time()
        for _ in range(63):
            async with budget.slot("a", 0):
                granted_at.append(trio.current_time() - start)
        nursery.cancel_scope.cancel()
    assert granted_at[:60] == [0.0] * 60  # the full minute's allowance
    assert granted_at[60:] == pytest.approx([1.0, 2.0, 3.0])  # then one a second


async def test_tokens_per_minute_and_the_correction_by_actual_use(
    autojump_clock: trio.testing.MockClock,
) -> None:
    budget = ModelBudget(tokens_per_minute=6000)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(budget.run)
        start = trio.current_time()
        async with budget.slot("a", 1000) as slot:
            slot.used(6000)  # the estimate was low: the rest of the minute is spent
        async with budget.slot("b", 1000):
            waited = trio.current_time() - start
        nursery.cancel_scope.cancel()
    assert waited == pytest.approx(10.0)  # 1000 tokens at 100 per second


async def test_a_burst_from_one_customer_waits_behind_everyone_else(
    autojump_clock: trio.testing.MockClock,
) -> None:
    budget = ModelBudget(requests_per_minute=60)
    order: list[str] = []

    async def turn(customer: str) -> None:
        async with budget.slot(customer, 0):
            order.append(customer)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(budget.run)
        for _ in range(60):  # spend the minute
            await turn("warmup")
        async with trio.open_nursery() as turns:
            for _ in range(5):
                turns.start_soon(turn, "burst")
                await trio.testing.wait_all_tasks_blocked()
            for customer in ("c1", "c2", "c3"):
                turns.start_soon(turn, customer)
                await trio.testing.wait_all_tasks_blocked()
            assert budget.waiting() == 8
        nursery.cancel_scope.cancel()
    served = order[60:]
    assert served[:4] == ["burst", "c1", "c2", "c3"], served
    assert served[4:] == ["burst"] * 4


async def test_a_hold_stops_all_spending_and_a_cancelled_waiter_leaves_no_trace(
    autojump_clock: trio.testing.MockClock,
) -> None:
    budget = ModelBudget(requests_per_minute=600)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(budget.run)
        budget.hold(30)
        with trio.move_on_after(5):
            async with budget.slot("gone", 0):
                raise AssertionError("granted during a hold")
        assert budget.waiting() == 0
        start = trio.current_time()
        async with budget.slot("a", 0):
            assert trio.current_time() - start == pytest.approx(25.0)
        nursery.cancel_scope.cancel()
    assert budget.held == 1


async def test_headers_align_the_buckets_with_what_openai_counts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    budget = ModelBudget()  # no settings: learned from the first answer
    async with trio.open_nursery() as nursery:
        nursery.start_soon(budget.run)
        budget.learn(
            {
                "x-ratelimit-limit-requests": "120",
                "x-ratelimit-remaining-requests": "0",
                "x-ratelimit-limit-tokens": "not a number",
            }
        )
        start = trio.current_time()
        async with budget.slot("a", 500):
            assert trio.current_time() - start == pytest.approx(0.5)  # 2 requests a second
        assert budget.oldest_wait() == 0
        nursery.cancel_scope.cancel()


async def test_a_turn_waiting_for_the_budget_shows_in_inspection_and_metrics(
    tmp_path: Path,
) -> None:
    async with open_fakes() as fakes:
        settings = make_settings(
            fakes,
            tmp_path,
            admin_token="budget-admin-token",
            openai_requests_per_minute=1,
            drain_seconds=0.2,
        )
        async with open_bot(fakes, settings) as bot:
            first, second = "573009900001", "573009900002"
            await bot.post(payloads.webhook([payloads.text_message(first, "hola")]))
            await fakes.whapi.wait_sent(1, to=f"{first}@s.whatsapp.net")
            await bot.post(payloads.webhook([payloads.text_message(second, "hola")]))
            headers = {"Authorization": "Bearer budget-admin-token"}

            async def turn_of(user: str) -> Any:
                info = await bot.http.get(f"{bot.url}/actors/{user}", headers=headers)
                return info.json().get("turn")

            async def waiting_for_budget() -> bool:
                turn = await turn_of(second)
                return bool(turn) and turn["stage"] == "waiting for the model budget"

            await wait_until_async(waiting_for_budget, timeout=5)
            turn = await turn_of(second)
            assert turn["stage"] == "waiting for the model budget"
            assert turn["waiting_for_budget_since"]
            metrics = (await bot.http.get(f"{bot.url}/metrics")).text
            assert "wabot_model_budget_waiting 1.0" in metrics
            assert len(responses_calls(fakes)) == 1, "the second call waits for the budget"


async def wait_until_async(probe: Any, timeout: float) -> None:
    with trio.fail_after(timeout):
        while not await probe():
            await trio.sleep(0.05)


async def test_a_429_holds_the_budget_for_its_retry_after_and_the_turn_still_answers(
    tmp_path: Path,
) -> None:
    async with open_fakes() as fakes:
        settings = make_settings(fakes, tmp_path, retry_max_seconds=3.0)
        async with open_bot(fakes, settings) as bot:
            fakes.openai.faults.add(r"/responses$", status=429, retry_after=1.0, times=1)
            user = "573009900011"
            started = trio.current_time()
            await bot.post(payloads.webhook([payloads.text_message(user, "hola")]))
            await fakes.whapi.wait_sent(1, to=f"{user}@s.whatsapp.net", timeout=10)
            budget = bot.service.deps.budget
            assert budget.held == 1, "the 429's Retry-After held the whole budget"
            calls = responses_calls(fakes)
            assert len(calls) == 2, "asked once more after the hold, not in a storm"
            assert trio.current_time() - started >= 1.0
            assert len(fakes.whapi.sent_to(f"{user}@s.whatsapp.net")) == 1


async def test_the_budget_is_corrected_by_the_tokens_openai_counted(tmp_path: Path) -> None:
    async with open_fakes() as fakes:
        settings = make_settings(fakes, tmp_path, openai_tokens_per_minute=6000)
        async with open_bot(fakes, settings) as bot:
            user = "573009900012"
            await bot.post(payloads.webhook([payloads.text_message(user, "hola")]))
            await fakes.whapi.wait_sent(1, to=f"{user}@s.whatsapp.net")
            (conversation,) = fakes.openai.conversations
            (response,) = fakes.openai.responses_for(conversation)
            used = response["usage"]["total_tokens"]
            budget = bot.service.deps.budget
            level = budget.remaining()["tokens"]
            # 6000 a minute is 100 a second: allow the refill of the test's own seconds.
            assert 6000 - used - 1 <= level <= 6000 - used + 300, (level, used)
