"""OpenAI's rate limits as a budget that turns spend fairly.

An OpenAI project has a budget of requests and of tokens per minute; spending past it earns
429s for everyone. ``ModelBudget`` holds two token buckets (requests, tokens), each refilled
continuously at its per-minute rate, and hands them out to the turns that ask:

* ``async with budget.slot(customer, tokens):`` waits until one request and ``tokens``
  (an estimate of the call's input and output) are available, then spends them; at the end
  ``slot.used(actual)`` corrects the estimate by what OpenAI reported.
* Waiting turns are served customer by customer in the order the customers started waiting,
  one request each per round: a customer with a burst of turns waits behind every other
  waiting customer for their second one, so one customer can never take the whole budget.
* ``learn(headers)`` aligns the buckets with OpenAI's ``x-ratelimit-*`` response headers (the
  limits, what remains and when it resets), so settings need not be exact and a budget shared
  with other programs is seen.
* ``hold(seconds)`` stops all spending for a while (a 429's ``Retry-After``), so one rate-limit
  answer does not turn into a storm of them.

Without limits (``None``) a budget grants at once and only counts; with both, both must allow.
Times are trio's clock; every wait can be cancelled, and a cancelled waiter leaves no trace.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import attrs
import trio


@attrs.define
class Bucket:
    """A per-minute allowance refilled continuously; ``level`` may go below zero (debt)."""

    per_minute: float
    level: float
    at: float

    def refill(self, now: float) -> None:
        rate = self.per_minute / 60.0
        self.level = min(self.per_minute, self.level + (now - self.at) * rate)
        self.at = now

    def wait_for(self, amount: float) -> float:
        """Seconds until ``amount`` is available (0 now); an amount above the whole
        allowance waits for a full bucket (it can never be more)."""
        need = min(amount, self.per_minute) - self.level
        return 0.0 if need <= 0 else need / (self.per_minute / 60.0)


@attrs.define(eq=False)
class _Waiter:
    customer: str
    tokens: int
    since: float
    granted: trio.Event = attrs.Factory(trio.Event)


@attrs.define(eq=False)
class Slot:
    """One granted model call; ``used`` corrects the token estimate once the call ended."""

    budget: ModelBudget
    estimate: int
    waited: float

    def used(self, tokens: int) -> None:
        self.budget._correct(tokens - self.estimate)
        self.estimate = tokens


class ModelBudget:
    def __init__(
        self,
        *,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
    ) -> None:
        self._requests = self._bucket(requests_per_minute)
        self._tokens = self._bucket(tokens_per_minute)
        #: Waiting turns per customer, customers in the order they started waiting.
        self._queues: OrderedDict[str, deque[_Waiter]] = OrderedDict()
        self._held_until = -math.inf
        self._pump_scope: trio.CancelScope | None = None
        self.granted = 0
        self.held = 0

    @staticmethod
    def _bucket(per_minute: float | None) -> Bucket | None:
        if per_minute is None:
            return None
        if per_minute <= 0:
            raise ValueError("a per-minute limit must be positive")
        return Bucket(per_minute, per_minute, trio.current_time())

    # -- what inspection and metrics read ----------------------------------------------------

    def waiting(self) -> int:
        """Turns waiting for the budget."""
        return sum(len(q) for q in self._queues.values())

    def remaining(self) -> dict[str, float | None]:
        """What is left now of each per-minute allowance (None: that limit is off)."""
        now = trio.current_time()
        left: dict[str, float | None] = {}
        for kind, bucket in (("requests", self._requests), ("tokens", self._tokens)):
            if bucket is not None:
                bucket.refill(now)
            left[kind] = None if bucket is None else bucket.level
        return left

    def oldest_wait(self) -> float:
        """Seconds the longest-waiting turn has waited (0 when none waits)."""
        heads = [q[0].since for q in self._queues.values() if q]
        return trio.current_time() - min(heads) if heads else 0.0

    # -- spending ----------------------------------------------------------------------------

    @asynccontextmanager
    async def slot(self, customer: str, tokens: int) -> AsyncIterator[Slot]:
        """Wait for one request and ``tokens`` of the budget, fairly; yield the grant."""
        waited = await self._acquire(customer, max(0, tokens))
        yield Slot(self, max(0, tokens), waited)

    async def _acquire(self, customer: str, tokens: int) -> float:
        since = trio.current_time()
        if not self._queues and self._available(tokens) == 0.0:
            self._spend(tokens)
            await trio.lowlevel.checkpoint()
            return 0.0
        waiter = _Waiter(customer, tokens, since)
        self._queues.setdefault(customer, deque()).append(waiter)
        self._kick()
        try:
            await waiter.granted.wait()
        except BaseException:
            if not waiter.granted.is_set():
                self._forget(waiter)
            else:  # granted as we were cancelled: give the request back
                self._correct(-tokens, request=True)
            self._kick()
            raise
        return trio.current_time() - since

    def _available(self, tokens: int) -> float:
        """Seconds until one request and ``tokens`` may be spent (0: now)."""
        now = trio.current_time()
        wait = max(0.0, self._held_until - now)
        for bucket, amount in ((self._requests, 1), (self._tokens, tokens)):
            if bucket is not None:
                bucket.refill(now)
                wait = max(wait, bucket.wait_for(amount))
        return wait

    def _spend(self, tokens: int) -> None:
        if self._requests is not None:
            self._requests.level -= 1
        if self._tokens is not None:
            self._tokens.level -= tokens
        self.granted += 1

    def _correct(self, tokens: int, *, request: bool = False) -> None:
        if self._tokens is not None:
            self._tokens.level -= tokens
        if request and self._requests is not None:
            self._requests.level += 1

    def _forget(self, waiter: _Waiter) -> None:
        queue = self._queues.get(waiter.customer)
        if queue is not None and waiter in queue:
            queue.remove(waiter)
            if not queue:
                del self._queues[waiter.customer]

    def _grant_ready(self) -> float:
        """Grant every waiter the budget allows now, round robin; seconds until the next."""
        while self._queues:
            customer, queue = next(iter(self._queues.items()))
            head = queue[0]
            wait = self._available(head.tokens)
            if wait > 0:
                return wait
            queue.popleft()
            del self._queues[customer]
            if queue:  # its next turn goes behind every other waiting customer
                self._queues[customer] = queue
            self._spend(head.tokens)
            head.granted.set()
        return math.inf

    def _kick(self) -> None:
        """Grant what can be granted; wake the pump (run by ``run``) to wait for the rest."""
        self._grant_ready()
        if self._pump_scope is not None:
            self._pump_scope.cancel()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Grant waiting turns as the budget refills; run it in the service's nursery."""
        task_status.started()
        while True:
            wait = self._grant_ready()
            with trio.CancelScope() as scope:
                self._pump_scope = scope
                await trio.sleep(wait)
            self._pump_scope = None

    # -- what OpenAI tells ---------------------------------------------------------------------

    def hold(self, seconds: float) -> None:
        """Spend nothing for ``seconds`` (a 429's ``Retry-After``)."""
        self.held += 1
        self._held_until = max(self._held_until, trio.current_time() + max(0.0, seconds))
        self._kick()

    def learn(self, headers: Mapping[str, str]) -> None:
        """Align the buckets with ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}``."""
        now = trio.current_time()
        for kind in ("requests", "tokens"):
            limit = _number(headers.get(f"x-ratelimit-limit-{kind}"))
            remaining = _number(headers.get(f"x-ratelimit-remaining-{kind}"))
            if limit is None or remaining is None or limit <= 0:
                continue
            bucket = getattr(self, f"_{kind}")
            if bucket is None:
                bucket = Bucket(limit, remaining, now)
                setattr(self, f"_{kind}", bucket)
            bucket.refill(now)
            bucket.per_minute = limit
            bucket.level = min(bucket.level, remaining)
        self._kick()


def _number(raw: str | None) -> float | None:
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        return None
