"""The console's last hour, minute by minute: turns, errors, fallbacks and sends.

``ActivityHistory`` keeps at most ``MINUTES`` (60) per-minute buckets, read from the service's
telemetry counters (``runtime.telemetry``): each ``sample()`` reads their cumulative totals and
adds what grew since the previous sample to the current minute's bucket (wall-clock minutes,
so the chart's times are the operator's). Nothing is observed on the hot paths: the console
samples every ``SAMPLE_SECONDS`` while the app serves, and once more on every read, so a turn
that just ended is in the next poll's answer. The first sample only sets the baseline: what
happened before the console started is not put in any minute.

What is counted, per minute:

- ``turns``: finished turns that answered or failed (``wabot_turns_total`` with outcome
  ``replied``, ``fallback`` or ``failed``; ``cancelled`` and ``deferred`` turns run again);
- ``errors``: the turns of those that the model did not answer (``fallback``, ``failed``);
- ``fallbacks``: the fallback text sent instead of an answer, plus the voice replies sent as
  text (``wabot_voice_fallbacks_total``);
- ``sent`` / ``send_errors``: messages sent to WhatsApp and failed sends
  (``wabot_sends_total`` by result), which tell Whapi's health.

``upstream_health`` turns the last ``HEALTH_MINUTES`` into one word per upstream: ``ok``,
``degraded`` (some failures), ``down`` (failures and no success) or ``idle`` (no traffic).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

import attrs
import trio

from actors.runtime.telemetry import Telemetry

MINUTES = 60
SAMPLE_SECONDS = 5.0
HEALTH_MINUTES = 5
FIELDS = ("turns", "errors", "fallbacks", "sent", "send_errors")

ANSWERED = frozenset({"replied", "fallback", "failed"})
NOT_ANSWERED = frozenset({"fallback", "failed"})


def _totals_by_label(metric: Any, label: str) -> dict[str, float]:
    """A labelled counter's ``_total`` samples, by the value of ``label`` (public API only)."""
    totals: dict[str, float] = {}
    for family in metric.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                key = sample.labels.get(label, "")
                totals[key] = totals.get(key, 0.0) + sample.value
    return totals


def telemetry_totals(telemetry: Telemetry) -> dict[str, float]:
    """The cumulative figures the history is made of, read from ``telemetry`` now."""
    turns = _totals_by_label(telemetry.turns, "outcome")
    sends = _totals_by_label(telemetry.sends, "result")
    voice = _totals_by_label(telemetry.voice_fallbacks, "reason")
    return {
        "turns": sum(v for k, v in turns.items() if k in ANSWERED),
        "errors": sum(v for k, v in turns.items() if k in NOT_ANSWERED),
        "fallbacks": turns.get("fallback", 0.0) + sum(voice.values()),
        "sent": sends.get("ok", 0.0),
        "send_errors": sum(v for k, v in sends.items() if k != "ok"),
    }


@attrs.define
class Minute:
    """One minute's counts; ``minute`` is the Unix time of its start divided by 60."""

    minute: int
    counts: dict[str, int] = attrs.Factory(lambda: dict.fromkeys(FIELDS, 0))


class ActivityHistory:
    """The last ``MINUTES`` minutes of ``read()``'s growth; ``clock`` is Unix time."""

    def __init__(
        self,
        read: Callable[[], dict[str, float]],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._read = read
        self._clock = clock
        self._minutes: deque[Minute] = deque(maxlen=MINUTES)
        self._last: dict[str, float] | None = None

    def sample(self) -> None:
        """Add what the counters grew by since the last sample to the current minute."""
        totals = self._read()
        last, self._last = self._last, totals
        if last is None:
            return
        bucket = self._bucket(int(self._clock() // 60))
        for name in FIELDS:
            grown = totals.get(name, 0.0) - last.get(name, 0.0)
            if grown > 0:
                bucket.counts[name] += round(grown)

    def _bucket(self, minute: int) -> Minute:
        if self._minutes and self._minutes[-1].minute >= minute:
            return self._minutes[-1]  # the clock went back: keep adding to the newest
        self._minutes.append(Minute(minute))
        return self._minutes[-1]

    def series(self) -> list[dict[str, Any]]:
        """The last ``MINUTES`` minutes, oldest first, zero where nothing happened."""
        now = int(self._clock() // 60)
        known = {m.minute: m.counts for m in self._minutes}
        empty = dict.fromkeys(FIELDS, 0)
        return [
            {"minute": minute * 60, **known.get(minute, empty)}
            for minute in range(now - MINUTES + 1, now + 1)
        ]

    def totals(self, minutes: int = MINUTES) -> dict[str, int]:
        """Each field summed over the last ``minutes`` minutes."""
        recent = self.series()[-minutes:]
        return {name: sum(m[name] for m in recent) for name in FIELDS}

    def upstream_health(self) -> dict[str, str]:
        recent = self.totals(HEALTH_MINUTES)
        answered = recent["turns"] - recent["errors"]
        return {
            "whapi": _health(recent["sent"], recent["send_errors"]),
            "openai": _health(answered, recent["errors"]),
        }

    async def run(self) -> None:
        """Sample every ``SAMPLE_SECONDS`` until cancelled."""
        while True:
            self.sample()
            await trio.sleep(SAMPLE_SECONDS)


def _health(good: int, bad: int) -> str:
    if bad and not good:
        return "down"
    if bad:
        return "degraded"
    return "ok" if good else "idle"
