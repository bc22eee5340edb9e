"""When the process cannot keep up: webhooks refused at once with 503 and ``Retry-After``.

Whapi redelivers a webhook that was not answered 200 (with a backoff) and asks for an answer
within a few seconds. Under a load past what the process can journal, a webhook acknowledged
late is worse than one refused at once: the late ones pile up behind each other, every ack
grows later, and Whapi's own timeouts start to redeliver what was already being written. So
before a webhook's body is read, ``Overload.reason()`` says whether to refuse it:

- ``"webhooks"``: ``WABOT_MAX_PENDING_WEBHOOKS`` webhooks are already being read or journaled
  (the inbox's write queue seen from the door: each waits for its group commit);
- ``"loop_lag"``: the event loop has lately run more than ``WABOT_SHED_LOOP_LAG_SECONDS`` late
  (its one core is saturated; measured by ``LoopLag``, a task that sleeps a tick and times how
  late it wakes, the worst lateness fading by half every ``LAG_HALF_LIFE_SECONDS``);
- ``"memory"``: the RSS is over ``WABOT_MEMORY_HARD_MB`` (the memory watchdog's level 2).

A refused webhook is not journaled, so nothing acknowledged is ever dropped: Whapi delivers it
again later. Every refusal is counted by reason (``wabot_webhooks_shed_total``); the first of
an episode is logged as a warning and the episode's end with its count.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import trio
from prometheus_client import CollectorRegistry, Counter

log = logging.getLogger("gateway.overload")

#: How often the lag task wakes; its lateness past this tick is the loop's lag.
LAG_TICK_SECONDS = 0.05
#: The worst lag seen fades by half this often, so one stall sheds for a moment, not forever.
LAG_HALF_LIFE_SECONDS = 0.5
#: What a refused webhook's ``Retry-After`` asks (Whapi's own backoff may wait longer).
RETRY_AFTER_SECONDS = 2


class LoopLag:
    """The event loop's recent lateness, in seconds (``run`` it in the service's nursery)."""

    def __init__(self) -> None:
        self._worst = 0.0
        self._at = -math.inf

    @property
    def seconds(self) -> float:
        elapsed = trio.current_time() - self._at
        return (
            self._worst * 0.5 ** (elapsed / LAG_HALF_LIFE_SECONDS) if elapsed > 0 else self._worst
        )

    def observe(self, lag: float) -> None:
        if lag >= self.seconds:
            self._worst, self._at = lag, trio.current_time()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            asked = trio.current_time() + LAG_TICK_SECONDS
            await trio.sleep_until(asked)
            self.observe(max(0.0, trio.current_time() - asked))


class Overload:
    """The door's overload rule: ``reason()`` before reading a webhook, ``pending`` around it."""

    def __init__(
        self,
        *,
        max_pending: int,
        max_lag: float,
        memory_level: Callable[[], int],
        registry: CollectorRegistry,
    ) -> None:
        self.max_pending = max_pending
        self.max_lag = max_lag
        self.lag = LoopLag()
        self._memory_level = memory_level
        #: Webhooks being read or journaled right now.
        self.pending = 0
        self.shed = Counter(
            "wabot_webhooks_shed",
            "Webhooks refused with 503 because the process could not keep up, by reason",
            ["reason"],
            registry=registry,
        )
        for reason in ("webhooks", "loop_lag", "memory"):
            self.shed.labels(reason)
        self._episode: str | None = None
        self._episode_count = 0

    def reason(self) -> str | None:
        """Why the next webhook must be refused now, or None to take it."""
        if self.max_pending and self.pending >= self.max_pending:
            why = "webhooks"
        elif self.max_lag and self.lag.seconds > self.max_lag:
            why = "loop_lag"
        elif self._memory_level() >= 2:
            why = "memory"
        else:
            if self._episode is not None:
                log.info(
                    "overload over: %d webhooks were refused with 503 (%s)",
                    self._episode_count,
                    self._episode,
                )
                self._episode, self._episode_count = None, 0
            return None
        self.shed.labels(why).inc()
        if self._episode is None:
            log.warning(
                "overloaded (%s: %d webhooks pending, loop %.2f s late): webhooks get 503 with "
                "Retry-After %d s until it eases",
                why,
                self.pending,
                self.lag.seconds,
                RETRY_AFTER_SECONDS,
            )
            self._episode = why
        self._episode_count += 1
        return why
