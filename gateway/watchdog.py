"""The memory watchdog: RSS against configured limits, with actions rather than alarms.

The original bot raised "leak" alarms at 95 % of a heap that V8 grows on demand. This looks
at the resident set size, which is what gets a process killed. Over the soft limit it
passivates idle actors (least recently active first, a share of them per check) and shrinks
the caches (the gateway's dedupe window, the chat-info cache); over the hard limit it
passivates every idle actor. Each action is logged and counted in ``/metrics``.

It also gives memory back with glibc's ``malloc_trim``, which returns the heap's free pages to
the OS: once a quarter of the peak of live actors (at least 1 000) has retired, and whenever
RSS has grown by ``TRIM_GROWTH_BYTES`` (or 5 %) since the last trim, at most once per
``TRIM_GROWTH_INTERVAL``. Without the first the RSS of a process stays at its peak after the
actors are gone (100k actors retired: 169 MiB kept, 60 MiB after the trim). Without the second
it creeps up in steady traffic with few live actors: the C heap keeps the pages that turns
allocate and free between the ids it remembers. In a steady day of the soak benchmark's model
(5 000 customers, 300 s) RSS rose 12 MiB in four minutes while the live C heap grew 5 MiB;
trimming every 30 s held it flat, each trim taking 1-13 ms (bench/RESULTS.md). On a C
library without ``malloc_trim`` this part does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import resource
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

if TYPE_CHECKING:
    from gateway.service import Service

log = logging.getLogger("gateway.watchdog")

_PAGE = resource.getpagesize()

#: Trim once at least this many actors, and a quarter of the peak, have retired since.
TRIM_MIN_RETIRED = 1_000
#: Trim once RSS has grown this much (or 5 %, if more) since the last trim...
TRIM_GROWTH_BYTES = 8 * 2**20
#: ...and at least this many seconds have passed since it.
TRIM_GROWTH_INTERVAL = 60.0


def rss_bytes() -> int:
    """Resident set size of this process now (Linux ``/proc``; peak RSS elsewhere)."""
    try:
        fields = Path("/proc/self/statm").read_text().split()
        return int(fields[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@functools.cache
def _malloc_trim() -> Any:
    name = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    except OSError:
        return None


def release_free_memory() -> bool:
    """Return the C heap's free pages to the OS (glibc ``malloc_trim``); False if unsupported.

    Blocking (it walks the heap; ~0.1 s after 100k actors retired): call it from a worker
    thread. ctypes releases the GIL for the call.
    """
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


class MemoryWatchdog:
    def __init__(
        self,
        service: Service,
        *,
        soft_bytes: int,
        hard_bytes: int,
        interval: float,
        measure: Callable[[], int] = rss_bytes,
        trim_growth_interval: float = TRIM_GROWTH_INTERVAL,
    ) -> None:
        self.service = service
        self.soft_bytes = soft_bytes
        self.hard_bytes = hard_bytes
        self.interval = interval
        self.measure = measure
        self.trim_growth_interval = trim_growth_interval
        #: Times RSS went over the soft limit (transitions, not checks).
        self.pressure_events = 0
        self.passivated = 0
        self.last_rss = 0
        #: 0 under the soft limit, 1 over it, 2 over the hard limit.
        self.level = 0
        #: Times freed memory was given back to the OS.
        self.trims = 0
        self._live_peak = 0
        #: RSS after the last trim (or at the first check), and when that was (trio clock).
        self._trimmed_rss: int | None = None
        self._trimmed_at = 0.0

    async def run(self) -> None:
        while True:
            passivated = self.check()
            if self.trim_due() or passivated:
                await self.trim()
            await trio.sleep(self.interval)

    def trim_due(self) -> bool:
        """True when a trim is worth it: many actors retired, or RSS grew (module docstring)."""
        supervisor = self.service.supervisor
        live = len(supervisor) if supervisor is not None else 0
        self._live_peak = max(self._live_peak, live)
        retired = self._live_peak - live
        if retired >= TRIM_MIN_RETIRED and retired * 4 >= self._live_peak:
            return True
        now = trio.current_time()
        if self._trimmed_rss is None:
            self._trimmed_rss, self._trimmed_at = self.last_rss, now
            return False
        grown = self.last_rss - self._trimmed_rss
        return (
            grown >= max(TRIM_GROWTH_BYTES, self._trimmed_rss // 20)
            and now - self._trimmed_at >= self.trim_growth_interval
        )

    async def trim(self) -> None:
        supervisor = self.service.supervisor
        self._live_peak = len(supervisor) if supervisor is not None else 0
        before = self.measure()
        released = await trio.to_thread.run_sync(release_free_memory)
        after = self.last_rss = self.measure()
        # Also without malloc_trim: the growth rule then waits for more growth, not every check.
        self._trimmed_rss, self._trimmed_at = after, trio.current_time()
        if released:
            self.trims += 1
            log.debug("gave freed memory back: RSS %.0f -> %.0f MiB", before / 2**20, after / 2**20)

    def check(self) -> int:
        """Measure once and act; returns how many actors were passivated."""
        rss = self.last_rss = self.measure()
        if self.soft_bytes <= 0 or rss < self.soft_bytes:
            if self.level:
                log.info("memory back under the soft limit: RSS %.0f MiB", rss / 2**20)
            self.level = 0
            return 0
        supervisor, gateway = self.service.supervisor, self.service.gateway
        if supervisor is None:
            return 0
        hard = self.hard_bytes > 0 and rss >= self.hard_bytes
        level = 2 if hard else 1
        if not self.level:
            self.pressure_events += 1
        limit = None if hard else max(1, len(supervisor) // 4)
        count = supervisor.retire_idle(limit)
        if gateway is not None:
            gateway.window.shrink(0.5)
        chat_info = getattr(self.service.deps, "chat_info", None)
        if chat_info is not None:
            chat_info.shrink(0.5)
        self.passivated += count
        # Said once per episode, and whenever actors were passivated (not every check).
        if count or level != self.level:
            log.warning(
                "memory %s: RSS %.0f MiB over the %s limit (%.0f MiB); passivated %d idle actors",
                "critical" if hard else "pressure",
                rss / 2**20,
                "hard" if hard else "soft",
                (self.hard_bytes if hard else self.soft_bytes) / 2**20,
                count,
            )
        self.level = level
        return count
