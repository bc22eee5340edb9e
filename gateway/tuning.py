"""Process-wide tuning of CPython's memory management, all of it here.

Each knob has one setting and one reason (the figures that keep it are in bench/RESULTS.md,
"Process-wide tuning at 10k live actors"):

- ``FullCollectionPacer`` (``WABOT_GC_FULL_INTERVAL_SECONDS``, 30 s): a full collection walks
  every live actor, and while new customers arrive CPython runs them back to back, so at most
  one automatic full collection runs per interval (young generations and explicit
  ``gc.collect()`` calls are untouched; pauses are counted for ``/metrics``).
- ``freeze_startup_heap`` (once, when the service is up): what start-up allocated lives as
  long as the process, so taking it out of the collector's walk shortens every full collection.
- ``stop_collecting_for_exit`` (on SIGTERM or SIGINT): the process exits after the drain, so
  a full collection over everything live would only lengthen the drain and the final snapshot.
- ``MemoryTrimmer`` (``TRIM_INTERVAL_SECONDS``, 30 s; also at once after the watchdog
  passivated actors): glibc keeps the pages of freed objects, so without ``malloc_trim`` RSS
  stays at its peak after customers' actors retire (a no-op where the C library lacks it).

The allocator is the environment's choice, never the process's: ``PYTHONMALLOC=malloc`` puts
Python's objects on the C allocator, whose freed pages ``malloc_trim`` can give back (CPython's
own allocator keeps an arena while one object in it lives); the Makefile's ``run`` target and
the README's production command set it, and ``allocator_advice`` says so when it is not set.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import logging
import os
import time
from typing import Any

import trio

log = logging.getLogger("gateway.tuning")

#: ``threshold2`` while full collections are held back: the number of young-generation
#: collections before a full one is considered, far beyond what a process reaches.
_OUT_OF_REACH = 2**30

#: How often the C heap's free pages are given back to the OS.
TRIM_INTERVAL_SECONDS = 30.0


class FullCollectionPacer:
    """At most one automatic full collection per ``interval`` seconds while ``run`` runs.

    ``interval`` 0 leaves CPython alone (and counts nothing). Leaving ``run`` restores the
    thresholds it found.
    """

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


def freeze_startup_heap() -> None:
    """Collect once, then move every object alive now out of the cycle collector's reach."""
    gc.collect()
    gc.freeze()


def stop_collecting_for_exit() -> None:
    """Switch the cycle collector off for good: the process has been told to stop.

    The garbage of the few turns still finishing during the drain is bounded by
    ``WABOT_DRAIN_SECONDS``. Called by the serving shell on SIGTERM/SIGINT, never by the
    service itself (tests run many services in one process).
    """
    gc.disable()


@functools.cache
def _malloc_trim() -> Any:
    name = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    except OSError:
        return None


def release_free_memory() -> bool:
    """Return the C heap's free pages to the OS (glibc ``malloc_trim``); False if unsupported.

    Blocking (it walks the heap): call it from a worker thread. ctypes releases the GIL for
    the call.
    """
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


class MemoryTrimmer:
    """Gives the C heap's free pages back every ``interval`` seconds, and when asked."""

    def __init__(self, interval: float = TRIM_INTERVAL_SECONDS) -> None:
        self.interval = interval
        #: Times freed memory was given back to the OS.
        self.trims = 0

    async def run(self) -> None:
        while True:
            await trio.sleep(self.interval)
            await self.trim()

    async def trim(self) -> None:
        started = time.perf_counter()
        if await trio.to_thread.run_sync(release_free_memory):
            self.trims += 1
            log.debug("gave freed memory back in %.1f ms", (time.perf_counter() - started) * 1e3)


def allocator_advice() -> str | None:
    """What to tell the operator when Python is not on the C allocator (None when it is)."""
    if os.environ.get("PYTHONMALLOC") == "malloc":
        return None
    return (
        "PYTHONMALLOC is not 'malloc': memory freed when customers' actors retire stays with "
        "the process (see README, Deploying)"
    )
