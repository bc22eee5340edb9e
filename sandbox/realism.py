"""Realistic behaviour for the fakes: lognormal latencies and OpenAI's per-minute rate limits.

`Lognormal` is a latency distribution given by its median and 99th percentile (the shape real
upstream latencies have: most calls near the median, a long right tail); ``sample(rng)`` draws
one value in seconds from a caller's seeded ``random.Random`` so runs are reproducible.

`RateLimiter` is an OpenAI project's account: optional requests-per-minute and
tokens-per-minute limits, each a bucket of ``limit`` that refills continuously at
``limit / 60`` per second (OpenAI's documented behaviour). ``admit`` takes one request and the
request's input tokens or says which limit is spent and for how long; ``spend`` charges the
reply's tokens afterwards (a bucket may go into debt, as a long answer can). ``headers`` are
OpenAI's ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}``, the reset a Go-style
duration (``1s``, ``6m0s``, ``20ms``). Times are trio's clock, so a mock clock drives it.

`Realism` gathers the settings a fake pair is built with (`sandbox.run`, ``python -m sandbox``,
``tests.harness.open_fakes``, ``bench.loadgen``); everything is off by default.
"""

from __future__ import annotations

import math
import random
from typing import Any

import attrs
import trio

#: The standard normal's 99th percentile: p99 = median * exp(Z99 * sigma).
Z99 = 2.3263478740408408
#: About four characters per token, OpenAI's rule of thumb for English-like text.
CHARS_PER_TOKEN = 4


@attrs.frozen
class Lognormal:
    """A lognormal latency in seconds with the given median and p99 (p99 >= median > 0)."""

    median: float
    p99: float

    def __attrs_post_init__(self) -> None:
        if not (self.median > 0 and self.p99 >= self.median):
            raise ValueError(f"need p99 >= median > 0, got median={self.median} p99={self.p99}")

    @property
    def mu(self) -> float:
        return math.log(self.median)

    @property
    def sigma(self) -> float:
        return math.log(self.p99 / self.median) / Z99

    def sample(self, rng: random.Random) -> float:
        """One latency in seconds."""
        if self.sigma == 0:
            return self.median
        return rng.lognormvariate(self.mu, self.sigma)

    def to_json(self) -> dict[str, float]:
        return {"median": self.median, "p99": self.p99}

    @classmethod
    def parse(cls, text: str) -> Lognormal:
        """``"MEDIAN,P99"`` in seconds (the command line's form)."""
        median, sep, p99 = text.partition(",")
        try:
            return cls(float(median), float(p99) if sep else float(median))
        except ValueError as exc:
            raise ValueError(f"expected MEDIAN,P99 in seconds, got {text!r}: {exc}") from None


#: The model's latency the issue asks for: a reasoning model's ``responses.create``.
REALISTIC_MODEL = Lognormal(3.0, 15.0)
#: A Whapi send (``POST /messages/*``).
REALISTIC_SEND = Lognormal(0.25, 1.0)


def format_duration(seconds: float) -> str:
    """A Go-style duration as OpenAI writes its resets: ``20ms``, ``1s``, ``1.5s``, ``6m0s``."""
    seconds = max(0.0, seconds)
    if seconds < 1:
        return f"{max(1, math.ceil(seconds * 1000)) if seconds > 0 else 0}ms"
    minutes, rest = divmod(seconds, 60)
    text = f"{rest:.3f}".rstrip("0").rstrip(".") + "s"
    if minutes >= 60:
        hours, minutes = divmod(minutes, 60)
        return f"{int(hours)}h{int(minutes)}m{text}"
    return f"{int(minutes)}m{text}" if minutes else text


def estimate_tokens(chars: int) -> int:
    """Tokens of ``chars`` characters of request or reply (at least 1)."""
    return max(1, math.ceil(chars / CHARS_PER_TOKEN))


@attrs.define
class Bucket:
    """``limit`` per minute, refilled continuously; ``level`` may go below zero (debt)."""

    limit: float
    level: float
    at: float

    def refill(self, now: float) -> None:
        self.level = min(self.limit, self.level + (now - self.at) * self.limit / 60.0)
        self.at = now

    def seconds_until(self, amount: float) -> float:
        """How long until ``amount`` is available (an amount above the limit: a full bucket)."""
        need = min(amount, self.limit) - self.level
        return 0.0 if need <= 0 else need * 60.0 / self.limit

    def headers(self, kind: str) -> dict[str, str]:
        return {
            f"x-ratelimit-limit-{kind}": str(int(self.limit)),
            f"x-ratelimit-remaining-{kind}": str(max(0, math.floor(self.level))),
            f"x-ratelimit-reset-{kind}": format_duration(self.seconds_until(self.limit)),
        }


@attrs.frozen
class Refusal:
    """Why a request was refused: the spent limit (``requests`` or ``tokens``) and the wait."""

    kind: str
    retry_after: float
    limit: float
    requested: float
    used: float


@attrs.define
class RateLimiter:
    """An OpenAI account's per-minute limits (either may be None: unlimited)."""

    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    _requests: Bucket | None = attrs.field(init=False, default=None)
    _tokens: Bucket | None = attrs.field(init=False, default=None)
    #: 429s answered, by the limit that was spent.
    refused: dict[str, int] = attrs.field(init=False, factory=lambda: {"requests": 0, "tokens": 0})
    admitted: int = attrs.field(init=False, default=0)
    tokens_counted: int = attrs.field(init=False, default=0)

    def _buckets(self) -> list[tuple[str, Bucket]]:
        """The limited buckets, refilled to now (created full on first use, in trio's clock)."""
        now = trio.current_time()
        if self._requests is None and self.requests_per_minute:
            self._requests = Bucket(self.requests_per_minute, self.requests_per_minute, now)
        if self._tokens is None and self.tokens_per_minute:
            self._tokens = Bucket(self.tokens_per_minute, self.tokens_per_minute, now)
        out = []
        for kind, bucket in (("requests", self._requests), ("tokens", self._tokens)):
            if bucket is not None:
                bucket.refill(now)
                out.append((kind, bucket))
        return out

    def admit(self, input_tokens: int) -> Refusal | None:
        """Take one request and ``input_tokens``, or refuse (counted) without taking anything."""
        buckets = self._buckets()
        for kind, bucket in buckets:
            amount = 1 if kind == "requests" else input_tokens
            if bucket.level < min(amount, bucket.limit) or bucket.level < 1:
                self.refused[kind] += 1
                return Refusal(
                    kind=kind,
                    retry_after=max(bucket.seconds_until(amount), 0.001),
                    limit=bucket.limit,
                    requested=amount,
                    used=bucket.limit - bucket.level,
                )
        for kind, bucket in buckets:
            bucket.level -= 1 if kind == "requests" else input_tokens
        self.admitted += 1
        self.tokens_counted += input_tokens
        return None

    def spend(self, tokens: int) -> None:
        """Charge tokens used after admission (the reply's)."""
        for kind, bucket in self._buckets():
            if kind == "tokens":
                bucket.level -= tokens
        self.tokens_counted += tokens

    def headers(self) -> dict[str, str]:
        """OpenAI's ``x-ratelimit-*`` headers for the account's current state."""
        out: dict[str, str] = {}
        for kind, bucket in self._buckets():
            out.update(bucket.headers(kind))
        return out

    def stats(self) -> dict[str, Any]:
        return {
            "requests_per_minute": self.requests_per_minute,
            "tokens_per_minute": self.tokens_per_minute,
            "admitted": self.admitted,
            "refused": dict(self.refused),
            "tokens_counted": self.tokens_counted,
        }


@attrs.frozen
class Realism:
    """How realistic a pair of fakes is; all off by default (tests stay fast)."""

    #: Latency of the fake OpenAI's ``responses.create`` (None: answers at once).
    model_latency: Lognormal | None = None
    #: Latency of the fake Whapi's sends, ``POST /messages/*`` (None: at once).
    send_latency: Lognormal | None = None
    #: The fake OpenAI account's limits (None: unlimited, no ``x-ratelimit-*`` headers).
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    #: Seed of the fakes' random generators (the OpenAI fake uses ``seed``, Whapi ``seed + 1``).
    seed: int = 0

    @classmethod
    def realistic(cls, **overrides: Any) -> Realism:
        """The issue's latencies: model median 3 s / p99 15 s, sends median 250 ms / p99 1 s."""
        values: dict[str, Any] = {
            "model_latency": REALISTIC_MODEL,
            "send_latency": REALISTIC_SEND,
            **overrides,
        }
        return cls(**values)

    def rate_limiter(self) -> RateLimiter | None:
        if not (self.requests_per_minute or self.tokens_per_minute):
            return None
        return RateLimiter(self.requests_per_minute, self.tokens_per_minute)

    def openai_kwargs(self) -> dict[str, Any]:
        """Constructor arguments of `FakeOpenAI`."""
        return {
            "latency": self.model_latency,
            "rate_limits": self.rate_limiter(),
            "seed": self.seed,
        }

    def whapi_kwargs(self) -> dict[str, Any]:
        """Constructor arguments of `FakeWhapi`."""
        return {"send_latency": self.send_latency, "seed": self.seed + 1}

    def to_json(self) -> dict[str, Any]:
        return {
            "model_latency": self.model_latency.to_json() if self.model_latency else None,
            "send_latency": self.send_latency.to_json() if self.send_latency else None,
            "requests_per_minute": self.requests_per_minute,
            "tokens_per_minute": self.tokens_per_minute,
            "seed": self.seed,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Realism:
        def latency(value: Any) -> Lognormal | None:
            return None if not value else Lognormal(float(value["median"]), float(value["p99"]))

        return cls(
            model_latency=latency(data.get("model_latency")),
            send_latency=latency(data.get("send_latency")),
            requests_per_minute=data.get("requests_per_minute"),
            tokens_per_minute=data.get("tokens_per_minute"),
            seed=int(data.get("seed", 0)),
        )
