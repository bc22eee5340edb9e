"""Pacing CPython's full garbage collections: at most one per ``WABOT_GC_FULL_INTERVAL_SECONDS``.

A full (generation 2) collection walks every tracked object, so its pause grows with the live
actors: ~20 µs per idle actor, about 0.2 s at 10k and 2 s at 100k (bench/RESULTS.md). CPython
starts one whenever the objects promoted since the last one exceed 25 % of the old generation,
so while customers arrive faster than actors idle out (a campaign, a morning peak) it runs
them back to back: 17 full collections, 3.4 s of pauses, in a 10-second burst of new users.

This keeps CPython's own rule and only rate-limits it. When a full collection ends, automatic
full collections are switched off (``threshold2`` set out of reach) and a task switches them
back on ``interval`` seconds later; the young generations keep their default pace, and the
service's own ``gc.collect()`` (memory watchdog) is not affected. Cyclic garbage that reached
the old generation waits at most ``interval`` longer than it would have; reference counting,
which frees almost everything an actor leaves behind, is not delayed at all.
"""

from __future__ import annotations

import gc
import logging
import time
from typing import Any

import trio

log = logging.getLogger("gateway.gcpace")

#: ``threshold2`` while full collections are held back: the number of young-generation
#: collections before a full one is considered, far beyond what a process reaches.
_OUT_OF_REACH = 2**30


class FullCollectionPacer:
    """Installed by ``run`` for its lifetime; restores the thresholds it found on exit."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        #: Full collections that ended while installed (automatic or explicit).
        self.collections = 0
        #: Their summed and longest pause, seconds.
        self.seconds_total = 0.0
        self.seconds_max = 0.0
        self._started: float | None = None
        self._default_threshold2 = gc.get_threshold()[2]
        self._held = False
        self._held_at = 0.0

    @property
    def held(self) -> bool:
        """True while automatic full collections are switched off."""
        return self._held

    async def run(self) -> None:
        if self.interval <= 0:
            await trio.sleep_forever()
        gc.callbacks.append(self._on_gc)
        # The callback runs inside the collector, at any allocation, even in the middle of
        # trio's scheduler: it only sets fields, and this loop looks at them.
        poll = min(1.0, self.interval / 4)
        try:
            while True:
                await trio.sleep(poll)
                if self._held and time.monotonic() - self._held_at >= self.interval:
                    self._release()
        finally:
            gc.callbacks.remove(self._on_gc)
            self._release()

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._started = time.perf_counter()
            return
        if self._started is not None:
            pause = time.perf_counter() - self._started
            self._started = None
            self.collections += 1
            self.seconds_total += pause
            self.seconds_max = max(self.seconds_max, pause)
        self._held_at = time.monotonic()
        if not self._held:
            self._held = True
            threshold0, threshold1, _ = gc.get_threshold()
            gc.set_threshold(threshold0, threshold1, _OUT_OF_REACH)

    def _release(self) -> None:
        if self._held:
            self._held = False
            threshold0, threshold1, _ = gc.get_threshold()
            gc.set_threshold(threshold0, threshold1, self._default_threshold2)


def stop_collecting_for_exit() -> None:
    """Switch the cycle collector off for good: the process has been told to stop.

    When the actors stop, the old generation holds everything they left behind, and the next
    full collection walks all of it: with 10k actors it took 2.6 s, inside the store's final
    snapshot, of a 3.1 s shutdown (bench/RESULTS.md, drain). The process exits once the drain
    is over, so nothing is gained by it; the garbage of the few turns still finishing during
    the drain is bounded by ``WABOT_DRAIN_SECONDS``. Called by ``wabot serve`` and the ASGI
    entry on SIGTERM/SIGINT, never by the service itself (tests run many in one process).
    """
    gc.disable()
