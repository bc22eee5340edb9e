"""Bounded retries on ``stamina``: exponential backoff, full jitter, ``Retry-After`` honoured.

Each upstream states once which of its failures deserve another attempt, as a *classifier*:
``classify(exc)`` is None for a failure that is not retried, otherwise the least wait in seconds
the server asked for (``Retry-After``; 0 when it said nothing); the REST upstreams (Whapi,
Beds24) share one, ``http_retryable``, over their ``UpstreamHTTPError`` subclasses.
``RetryPolicy.retrying`` turns a classifier into stamina's retry loop (``async for attempt in
...: with attempt: ...``), which under trio sleeps with ``trio.sleep``; the last failure
propagates as raised. The loop runs
under the caller's deadline, so even a long ``Retry-After`` never outlives a turn.

The wait before each retry is ``RetryPolicy.delay``, handed to stamina through its backoff
hook (an ``on=`` callable returning the seconds to wait, the hook stamina offers for
``Retry-After``). stamina's own backoff, ``min(wait_max, wait_initial * 2**n + jitter)``, loses
its jitter once it reaches ``wait_max``: every client would then retry in step. Ours draws the
whole wait at random below the exponential ceiling (full jitter), and never waits less than the
server asked for.
"""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterable, Callable

import attrs
import httpx
import stamina

log = logging.getLogger("actors.upstream.retry")

#: An upstream's one rule: None (not retried) or the least seconds to wait before retrying.
Classifier = Callable[[BaseException], float | None]


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

    def retrying(self, classify: Classifier, *, what: str) -> AsyncIterable[stamina.Attempt]:
        """stamina's attempts of one call, at most ``attempts``, waiting ``delay`` between."""
        backoff = _Backoff(self, classify, what)
        return stamina.retry_context(on=backoff, attempts=self.attempts, timeout=None)


class _Backoff:
    """stamina's ``on=`` hook for one retried call: False, or the seconds to wait."""

    def __init__(self, policy: RetryPolicy, classify: Classifier, what: str) -> None:
        self._policy = policy
        self._classify = classify
        self._what = what
        self._failures = 0

    def __call__(self, exc: BaseException) -> bool | float:
        self._failures += 1
        retry_after = self._classify(exc)
        if retry_after is None:
            return False
        wait = self._policy.delay(self._failures, retry_after)
        if self._failures < self._policy.attempts:
            log.warning(
                "%s failed (%r), attempt %d of %d; retrying in %.2fs",
                self._what,
                exc,
                self._failures,
                self._policy.attempts,
                wait,
            )
        return wait


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds (the HTTP-date form is rare for APIs and is ignored)."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


class UpstreamHTTPError(Exception):
    """A REST upstream answered with an error, or could not be reached within its attempts."""

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


def http_retryable(exc: BaseException) -> float | None:
    """A REST upstream's retryable failures (a classifier): 429, 5xx and dropped connections."""
    if isinstance(exc, UpstreamHTTPError) and exc.status is not None:
        if exc.status == 429 or exc.status >= 500:
            return exc.retry_after or 0.0
        return None
    return 0.0 if isinstance(exc, httpx.TransportError) else None
