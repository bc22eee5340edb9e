"""The fakes' realism (``sandbox.realism``): lognormal latencies and OpenAI's rate limits."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import httpx
import openai
import pytest
import trio
import trio.testing

from sandbox.openai import FakeOpenAI
from sandbox.realism import (
    REALISTIC_MODEL,
    REALISTIC_SEND,
    Lognormal,
    RateLimiter,
    Realism,
    format_duration,
)
from sandbox.run import parse_args, realism_from_args
from sandbox.testing import start_fake_openai, start_fake_whapi
from tests.harness import open_fakes

MODEL = "gpt-test"


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[int(q * (len(ordered) - 1))]


@pytest.mark.parametrize("latency", [REALISTIC_MODEL, REALISTIC_SEND, Lognormal(0.5, 4.0)])
def test_samples_have_the_asked_median_and_p99(latency: Lognormal) -> None:
    rng = random.Random(11)
    values = [latency.sample(rng) for _ in range(200_000)]
    assert quantile(values, 0.5) == pytest.approx(latency.median, rel=0.02)
    assert quantile(values, 0.99) == pytest.approx(latency.p99, rel=0.05)
    assert min(values) > 0


def test_the_seed_makes_draws_reproducible() -> None:
    def draws(seed: int) -> list[float]:
        rng = random.Random(seed)
        return [REALISTIC_MODEL.sample(rng) for _ in range(50)]

    assert draws(3) == draws(3)
    assert draws(3) != draws(4)


def test_a_degenerate_distribution_is_its_median_and_bad_ones_are_refused() -> None:
    assert Lognormal(0.2, 0.2).sample(random.Random(1)) == 0.2
    assert Lognormal.parse("3,15") == Lognormal(3.0, 15.0)
    with pytest.raises(ValueError, match="p99 >= median"):
        Lognormal(2.0, 1.0)
    with pytest.raises(ValueError, match="MEDIAN,P99"):
        Lognormal.parse("fast")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.0, "0ms"), (0.02, "20ms"), (0.0001, "1ms"), (1.0, "1s"), (1.5, "1.5s"), (360, "6m0s")],
)
def test_resets_are_written_as_openai_does(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_the_command_line_builds_the_realism() -> None:
    realistic = realism_from_args(parse_args(["--realistic", "--openai-rpm", "600", "--seed", "5"]))
    assert realistic == Realism(
        model_latency=REALISTIC_MODEL,
        send_latency=REALISTIC_SEND,
        requests_per_minute=600,
        seed=5,
    )
    assert realism_from_args(parse_args([])) == Realism()
    custom = realism_from_args(parse_args(["--realistic", "--model-latency", "1,2"]))
    assert custom.model_latency == Lognormal(1, 2)
    assert Realism.from_json(realistic.to_json()) == realistic


async def test_delayed_model_calls_overlap_and_record_their_latency(
    nursery: trio.Nursery,
) -> None:
    fake = await start_fake_openai(nursery)
    durations: list[float] = []
    async with openai.AsyncOpenAI(base_url=fake.url, api_key=fake.api_key, max_retries=0) as c:
        await c.responses.create(model=MODEL, input="warm-up")  # the SDK's first call is slow
        fake.reset()
        fake.latency = Lognormal(0.3, 0.3)

        async def one(index: int) -> None:
            started = trio.current_time()
            await c.responses.create(
                model=MODEL, input=f"hola {index}", safety_identifier=f"u{index}"
            )
            durations.append(trio.current_time() - started)

        started = trio.current_time()
        async with trio.open_nursery() as calls:
            for index in range(8):
                calls.start_soon(one, index)
        elapsed = trio.current_time() - started
    assert min(durations) >= 0.3
    assert elapsed < 0.3 * 2, "the delays ran one after another"
    assert fake.model_stats()["in_flight_peak"] == 8
    assert sorted(c.who for c in fake.model_calls) == sorted(f"u{i}" for i in range(8))
    assert all(c.latency == 0.3 and c.status == 200 for c in fake.model_calls)
    assert [c.injected_latency for c in fake.calls_to("/v1/responses$")] == [0.3] * 8
    async with httpx.AsyncClient(base_url=fake.base_url) as http:
        control = (await http.get("/__fake__/model", params={"last": 3})).json()
    assert len(control["calls"]) == 3 and control["calls"][0]["latency"] == 0.3
    assert control["stats"]["responses_created"] == 9  # the warm-up too
    assert control["stats"]["model_calls"] == 8


async def test_delayed_sends_overlap_and_other_endpoints_are_not_delayed(
    nursery: trio.Nursery,
) -> None:
    fake = await start_fake_whapi(nursery, send_latency=Lognormal(0.25, 0.25), echo=False)
    headers = {"Authorization": f"Bearer {fake.token}"}
    async with httpx.AsyncClient(base_url=fake.url, headers=headers, timeout=5) as http:
        started = trio.current_time()
        await http.get("/health")
        assert trio.current_time() - started < 0.25
        started = trio.current_time()
        async with trio.open_nursery() as sends:
            for index in range(6):
                body = {"to": f"57300000000{index}", "body": "hola"}
                sends.start_soon(lambda b=body: http.post("/messages/text", json=b))
        elapsed = trio.current_time() - started
    assert 0.25 <= elapsed < 0.5
    assert len(fake.sent) == 6
    assert [c.injected_latency for c in fake.calls_to("/messages/text")] == [0.25] * 6


async def test_open_fakes_takes_the_realism() -> None:
    realism = Realism(send_latency=Lognormal(0.1, 0.2), requests_per_minute=60, seed=9)
    async with open_fakes(realism) as fakes:
        assert fakes.whapi.send_latency == Lognormal(0.1, 0.2)
        assert fakes.openai.latency is None
        assert fakes.openai.rate_limits is not None
        assert fakes.openai.rate_limits.requests_per_minute == 60


@pytest.fixture
async def limited(nursery: trio.Nursery) -> AsyncIterator[tuple[FakeOpenAI, httpx.AsyncClient]]:
    fake = await start_fake_openai(nursery)
    headers = {"Authorization": f"Bearer {fake.api_key}"}
    async with httpx.AsyncClient(base_url=fake.url, headers=headers, timeout=5) as http:
        yield fake, http


async def test_headers_are_present_and_decrease(
    limited: tuple[FakeOpenAI, httpx.AsyncClient],
) -> None:
    fake, http = limited
    fake.rate_limits = RateLimiter(requests_per_minute=10, tokens_per_minute=6000)
    remaining: list[tuple[int, int]] = []
    used = 0
    for index in range(3):
        reply = await http.post("/responses", json={"model": MODEL, "input": "hola " * index})
        assert reply.status_code == 200
        h = reply.headers
        assert h["x-ratelimit-limit-requests"] == "10"
        assert h["x-ratelimit-limit-tokens"] == "6000"
        assert h["x-ratelimit-reset-requests"].endswith("s")
        assert h["x-ratelimit-reset-tokens"].endswith("s")
        remaining.append(
            (int(h["x-ratelimit-remaining-requests"]), int(h["x-ratelimit-remaining-tokens"]))
        )
        used += reply.json()["usage"]["total_tokens"]
    assert [r for r, _ in remaining] == [9, 8, 7]
    assert remaining[0][1] > remaining[1][1] > remaining[2][1]
    # What the responses report as usage is what the account counted.
    assert fake.rate_limits.tokens_counted == used
    # The bucket refills 100 tokens a second meanwhile: what is left is at most that much more.
    assert 6000 - used <= remaining[2][1] < 6000 - used + 100
    # Other endpoints carry the account's state too.
    conversation = await http.post("/conversations", json={})
    assert conversation.headers["x-ratelimit-remaining-requests"] == "7"


async def test_usage_counts_the_body_at_four_characters_a_token(
    limited: tuple[FakeOpenAI, httpx.AsyncClient],
) -> None:
    fake, http = limited
    reply = await http.post("/responses", json={"model": MODEL, "input": "x" * 400})
    usage = reply.json()["usage"]
    body_chars = int(fake.calls_to("/v1/responses$")[0].headers["content-length"])
    assert usage["input_tokens"] == -(-body_chars // 4)
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert fake.model_calls[0].input_tokens == usage["input_tokens"]
    assert "x-ratelimit-limit-requests" not in reply.headers  # no limits, no headers


async def test_a_spent_request_limit_answers_429_with_retry_after(
    limited: tuple[FakeOpenAI, httpx.AsyncClient],
) -> None:
    fake, http = limited
    fake.rate_limits = RateLimiter(requests_per_minute=2)
    for _ in range(2):
        assert (
            await http.post("/responses", json={"model": MODEL, "input": "a"})
        ).status_code == 200
    refused = await http.post("/responses", json={"model": MODEL, "input": "a"})
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["code"] == "rate_limit_exceeded" and error["type"] == "requests"
    assert "Limit 2, Used 2, Requested 1" in error["message"]
    assert 29_000 <= int(refused.headers["retry-after-ms"]) <= 30_000
    assert refused.headers["retry-after"] == "30"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    stats = fake.model_stats()
    assert stats["rate_limited"] == 1 and stats["rate_limits"]["refused"]["requests"] == 1
    assert stats["responses_created"] == 2
    assert fake.model_calls[-1].refused == "requests" and fake.model_calls[-1].status == 429
    # The SDK reads it as a RateLimitError.
    async with openai.AsyncOpenAI(base_url=fake.url, api_key=fake.api_key, max_retries=0) as c:
        with pytest.raises(openai.RateLimitError):
            await c.responses.create(model=MODEL, input="a")


async def test_a_spent_token_limit_answers_429_of_type_tokens(
    limited: tuple[FakeOpenAI, httpx.AsyncClient],
) -> None:
    fake, http = limited
    fake.rate_limits = RateLimiter(tokens_per_minute=600)
    first = await http.post("/responses", json={"model": MODEL, "input": "y" * 2000})
    assert first.status_code == 200  # a full bucket admits even a call above what is left after
    refused = await http.post("/responses", json={"model": MODEL, "input": "y" * 2000})
    assert refused.status_code == 429
    assert refused.json()["error"]["type"] == "tokens"
    assert int(refused.headers["retry-after-ms"]) > 1000
    assert fake.model_stats()["rate_limits"]["refused"] == {"requests": 0, "tokens": 1}


async def test_the_limit_refills_after_the_advised_wait(
    limited: tuple[FakeOpenAI, httpx.AsyncClient],
) -> None:
    fake, http = limited
    fake.rate_limits = RateLimiter(requests_per_minute=120)  # one request every 0.5 s
    admitted = 0
    for _ in range(200):
        reply = await http.post("/responses", json={"model": MODEL, "input": "a"})
        if reply.status_code == 429:
            break
        admitted += 1
    assert reply.status_code == 429 and admitted >= 120
    wait = int(reply.headers["retry-after-ms"]) / 1000
    assert 0 < wait <= 0.5
    await trio.sleep(wait)
    again = await http.post("/responses", json={"model": MODEL, "input": "a"})
    assert again.status_code == 200


async def test_buckets_refill_continuously_in_trios_clock(
    autojump_clock: trio.testing.MockClock,
) -> None:
    clock = autojump_clock
    if True:
        limiter = RateLimiter(requests_per_minute=60, tokens_per_minute=6000)
        for _ in range(60):
            assert limiter.admit(10) is None
        refusal = limiter.admit(10)
        assert refusal is not None and refusal.kind == "requests"
        assert refusal.retry_after == pytest.approx(1.0)
        assert limiter.headers()["x-ratelimit-reset-requests"] == "1m0s"
        clock.jump(1.0)  # one request and 100 tokens back
        assert limiter.admit(10) is None
        limiter.spend(5900)  # a long answer: the tokens go into debt (5490 - 5900)
        clock.jump(1.0)
        refusal = limiter.admit(10)
        assert refusal is not None and refusal.kind == "tokens"
        assert refusal.retry_after == pytest.approx((10 + 310) * 60 / 6000)
        assert limiter.headers()["x-ratelimit-remaining-tokens"] == "0"
        assert limiter.headers()["x-ratelimit-remaining-requests"] == "1"
        clock.jump(60.0)
        headers = limiter.headers()
        assert headers["x-ratelimit-remaining-requests"] == "60"
        assert headers["x-ratelimit-reset-requests"] == "0ms"
        assert limiter.stats()["refused"] == {"requests": 1, "tokens": 1}
        assert limiter.tokens_counted == 610 + 5900
