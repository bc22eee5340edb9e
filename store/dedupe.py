"""The ids of done inbound messages, remembered for a window and bounded in number.

Ids live in time buckets (each at most 1/16 of the window long and of the id bound), so
forgetting the oldest is dropping a whole bucket, and a snapshot thread can copy one bucket at a
time (a short GIL hold). A new bucket is started when a snapshot begins, so the buckets being
copied no longer receive inserts.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator

import attrs

BUCKETS_PER_WINDOW = 16
MAX_BUCKET_IDS = 50_000


@attrs.define(eq=False)
class Bucket:
    started: float
    ids: dict[str, float] = attrs.Factory(dict)


@attrs.define(eq=False)
class DoneIds:
    """Message id -> time (epoch seconds) it was marked done."""

    window: float
    max_ids: int
    _buckets: deque[Bucket] = attrs.Factory(deque)
    _count: int = 0

    @property
    def _span(self) -> float:
        return self.window / BUCKETS_PER_WINDOW

    @property
    def _bucket_cap(self) -> int:
        return max(1, min(MAX_BUCKET_IDS, self.max_ids // BUCKETS_PER_WINDOW))

    def get(self, message_id: str, now: float) -> float | None:
        """When ``message_id`` was done, or ``None`` if unknown or outside the window."""
        cutoff = now - self.window
        for bucket in reversed(self._buckets):
            at = bucket.ids.get(message_id)
            if at is not None:
                return at if at >= cutoff else None
        return None

    def add(self, message_id: str, at: float) -> tuple[Bucket, float | None]:
        """Remember ``message_id``; returns its bucket and previous time there (for undo)."""
        bucket = self._current(at)
        previous = bucket.ids.get(message_id)
        if previous is None:
            self._count += 1
        bucket.ids[message_id] = at
        if self._count > self.max_ids:
            self._drop_oldest_while(
                lambda _b: len(self._buckets) > 1 and self._count > self.max_ids
            )
        return bucket, previous

    def undo_add(self, bucket: Bucket, message_id: str, previous: float | None) -> None:
        if previous is None:
            if bucket.ids.pop(message_id, None) is not None:
                self._count -= 1
        else:
            bucket.ids[message_id] = previous

    def prune(self, now: float) -> int:
        """Forget buckets entirely outside the window; returns how many ids were forgotten."""
        cutoff = now - self.window
        before = self._count
        self._drop_oldest_while(
            lambda b: len(self._buckets) > 1 and max(b.ids.values(), default=0.0) < cutoff
        )
        return before - self._count

    def seal(self) -> list[Bucket]:
        """Start a new bucket and return the older ones (no longer written) for a snapshot."""
        sealed = list(self._buckets)
        if not self._buckets or self._buckets[-1].ids:
            self._buckets.append(Bucket(started=float("inf")))
        return sealed

    def items(self) -> Iterator[tuple[str, float]]:
        for bucket in list(self._buckets):
            yield from list(bucket.ids.items())

    def __len__(self) -> int:
        return self._count

    def _current(self, at: float) -> Bucket:
        if self._buckets:
            last = self._buckets[-1]
            if last.started == float("inf"):
                last.started = at
            if len(last.ids) < self._bucket_cap and at - last.started < self._span:
                return last
        bucket = Bucket(started=at)
        self._buckets.append(bucket)
        return bucket

    def _drop_oldest_while(self, condition: Callable[[Bucket], bool]) -> None:
        while self._buckets and condition(self._buckets[0]):
            dropped = self._buckets.popleft()
            self._count -= len(dropped.ids)
