"""Bounded retries with exponential backoff, full jitter and ``Retry-After``.

One small policy shared by the Whapi and OpenAI clients. A caller says which failures are
worth another attempt (``Retryable``); everything else propagates at once. The whole loop is
meant to run under the caller's deadline, so a long ``Retry-After`` can never outlive a turn.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import attrs
import trio

T = TypeVar("T")
log = logging.getLogger("actors.retry")


class Retryable(Exception):
    """Raised by an attempt to ask for another one, optionally after ``retry_after`` seconds."""

    def __init__(self, reason: str, *, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


@attrs.frozen
class RetryPolicy:
    attempts: int = 3
    base_seconds: float = 0.5
    max_seconds: float = 8.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (``attempt`` counts from 1)."""
        ceiling = min(self.max_seconds, self.base_seconds * 2 ** (attempt - 1))
        jittered = random.uniform(0, ceiling)
        if retry_after is not None and retry_after > 0:
            # The server said when; never earlier than that, never absurdly late.
            return max(jittered, min(retry_after, max(self.max_seconds, 60.0)))
        return jittered


async def retrying(
    attempt_fn: Callable[[int], Awaitable[T]], policy: RetryPolicy, *, what: str
) -> T:
    """Call ``attempt_fn(n)`` for n = 1.. until it returns, or the last ``Retryable`` escapes.

    The final failure is re-raised as the ``Retryable``'s cause (the original exception) when
    there is one, so callers see the real error.
    """
    attempt = 1
    while True:
        try:
            return await attempt_fn(attempt)
        except Retryable as exc:
            if attempt >= policy.attempts:
                if exc.__cause__ is not None:
                    raise exc.__cause__ from exc
                raise
            wait = policy.delay(attempt, exc.retry_after)
            log.warning(
                "%s failed (%s), attempt %d of %d; retrying in %.2fs",
                what,
                exc.reason,
                attempt,
                policy.attempts,
                wait,
            )
            await trio.sleep(wait)
            attempt += 1


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds (the HTTP-date form is rare for APIs and is ignored)."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None
