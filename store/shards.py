"""A dict split into many small dicts, so a snapshot can copy it piece by piece.

Copying one small dict (``list(shard.items())``) is a single C call that holds the GIL for
microseconds and cannot observe a half-applied mutation. A snapshot thread copies the shards
one after the other while the event loop keeps mutating the others: a fuzzy snapshot, made
correct by replaying the journal from the snapshot's seq (every journal op sets a final value).
Copying one big dict instead would hold the GIL, and so stall trio, for the whole copy.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

V = TypeVar("V")

SHARDS = 1024


class ShardedDict(Generic[V]):
    """``str`` keys to values; only the owning thread mutates, any thread may copy a shard."""

    __slots__ = ("_len", "_mask", "_shards")

    def __init__(self, shards: int = SHARDS) -> None:
        assert shards & (shards - 1) == 0, "shard count must be a power of two"
        self._shards: list[dict[str, V]] = [{} for _ in range(shards)]
        self._mask = shards - 1
        self._len = 0

    def _shard(self, key: str) -> dict[str, V]:
        return self._shards[hash(key) & self._mask]

    def get(self, key: str) -> V | None:
        return self._shard(key).get(key)

    def set(self, key: str, value: V) -> V | None:
        """Store ``value``; returns the previous value (``None`` if there was none)."""
        shard = self._shard(key)
        previous = shard.get(key)
        shard[key] = value
        if previous is None:
            self._len += 1
        return previous

    def pop(self, key: str) -> V | None:
        previous = self._shard(key).pop(key, None)
        if previous is not None:
            self._len -= 1
        return previous

    def __len__(self) -> int:
        return self._len

    def __contains__(self, key: str) -> bool:
        return key in self._shard(key)

    @property
    def shards(self) -> list[dict[str, V]]:
        """The shards themselves, for copying one at a time (``list(shard.items())``)."""
        return self._shards

    def items_copy(self) -> Iterator[tuple[str, V]]:
        """Every item, copying one shard at a time (fuzzy across shards if mutated meanwhile)."""
        for shard in self._shards:
            yield from list(shard.items())
