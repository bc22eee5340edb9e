"""The memory watchdog: RSS against configured limits, with actions rather than alarms.

The original bot raised "leak" alarms at 95 % of a heap that V8 grows on demand. This looks
at the resident set size, which is what gets a process killed. Over the soft limit it
passivates idle actors (least recently active first, a share of them per check) and shrinks
the caches (the gateway's dedupe window, the chat-info cache); over the hard limit it
passivates every idle actor. Each action is logged and counted in ``/metrics``, and after
passivating it has the C heap's freed pages given back at once (``gateway.tuning``) rather
than at the next periodic trim.
"""

from __future__ import annotations

import logging
import resource
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import trio

from gateway.tuning import MemoryTrimmer

if TYPE_CHECKING:
    from actors.runtime.supervisor import Supervisor
    from gateway.gateway import Gateway

log = logging.getLogger("gateway.watchdog")

_PAGE = resource.getpagesize()


class Tended(Protocol):
    """What the watchdog looks after (the service); each part is None until it has started."""

    supervisor: Supervisor | None
    gateway: Gateway | None
    #: The user actors' shared dependencies; their ``chat_info`` cache, if any, is shrunk.
    deps: Any


def rss_bytes() -> int:
    """Resident set size of this process now (Linux ``/proc``; peak RSS elsewhere)."""
    try:
        fields = Path("/proc/self/statm").read_text().split()
        return int(fields[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class MemoryWatchdog:
    """Checks RSS every ``interval`` seconds against the soft and hard limits (0: no limit)."""

    def __init__(
        self,
        service: Tended,
        *,
        soft_bytes: int,
        hard_bytes: int,
        interval: float,
        trimmer: MemoryTrimmer,
        measure: Callable[[], int] = rss_bytes,
    ) -> None:
        self.service = service
        self.soft_bytes = soft_bytes
        self.hard_bytes = hard_bytes
        self.interval = interval
        self.trimmer = trimmer
        self.measure = measure
        #: Times RSS went over the soft limit (transitions, not checks).
        self.pressure_events = 0
        self.passivated = 0
        self.last_rss = 0
        #: 0 under the soft limit, 1 over it, 2 over the hard limit.
        self.level = 0

    async def run(self) -> None:
        while True:
            if self.check():
                await self.trimmer.trim()
                self.last_rss = self.measure()
            await trio.sleep(self.interval)

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
