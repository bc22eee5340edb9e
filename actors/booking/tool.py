"""The ``check_availability`` tool: availability and prices of a stay, from Beds24.

On when ``BEDS24_TOKEN`` or ``BEDS24_REFRESH_TOKEN`` is set (``actors.wiring`` builds it).
The model gives ``startDate`` and ``endDate`` (``YYYY-MM-DD``: the check-in and the check-out
day) and optionally a ``propertyId`` or ``roomId``. The output is **always a string** for the
model to read:

- the dates' rules (``booking.dates``): a format error, the year-hallucination fix, the
  check-out after the check-in, a past check-in answered with the technical instruction, the
  cap of ``BEDS24_MAX_NIGHTS`` nights; none of them costs a Beds24 call;
- a ``propertyId`` or ``roomId`` that is not a positive number is an error string;
- otherwise Beds24's calendar for those nights (and that property or room, sent in the
  query), described by ``booking.availability``;
- when Beds24 fails (an error status, ``success: false``, a network error, a timeout) or the
  whole check outlives ``BEDS24_DEADLINE_SECONDS``, the technical error that tells the model to
  tell the guest the booking system is failing. A failure is never "nothing available".

Answers from Beds24 are reused for ``BEDS24_CACHE_SECONDS`` (5 minutes) from a
``cachetools.TTLCache`` of at most ``BEDS24_CACHE_SIZE`` entries, keyed by the stay and the
property and room asked about; failures and date errors are not cached. The tool's
``interim`` message (``BEDS24_INTERIM_MESSAGE``) goes to the customer before a round of several
calls that includes it (``customer.turn``).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import cachetools
import trio

from actors.booking.availability import describe
from actors.booking.dates import DateProblem, check_stay
from actors.settings import Settings
from actors.tools import Tool, ToolContext
from actors.upstream.beds24 import Beds24Client, Beds24Error

log = logging.getLogger("actors.booking.tool")

NAME = "check_availability"

BOOKING_SYSTEM_DOWN = (
    "Error tecnico** dile al huesped que el sistema de reservas esta fallando en este momento, "
    "que en un momentico lo volveremos a intentar... paso a seguir: envia mensaje al huesped"
)

PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "startDate": {
            "type": "string",
            "description": "Fecha de llegada (check-in), YYYY-MM-DD",
        },
        "endDate": {
            "type": "string",
            "description": "Fecha de salida (check-out), YYYY-MM-DD; posterior a la llegada",
        },
        "propertyId": {
            "type": ["integer", "null"],
            "description": "Solo esta propiedad de Beds24 (null: todas)",
        },
        "roomId": {
            "type": ["integer", "null"],
            "description": "Solo esta habitación de Beds24 (null: todas)",
        },
    },
    "required": ["startDate", "endDate", "propertyId", "roomId"],
    "additionalProperties": False,
}

DESCRIPTION = (
    "Consulta en el sistema de reservas la disponibilidad y los precios reales de los "
    "apartamentos para una estadía. Úsala siempre antes de dar disponibilidad o precios; "
    "si el cliente pregunta por varias fechas, haz una llamada por cada una."
)

CacheKey = tuple[str, str, int | None, int | None]


class AvailabilityChecker:
    """The rules and the cache of ``check_availability`` around one ``Beds24Client``."""

    def __init__(
        self,
        client: Beds24Client,
        *,
        timezone: str,
        max_nights: int,
        deadline: float,
        cache_seconds: float,
        cache_size: int,
    ) -> None:
        self._client = client
        self._zone = ZoneInfo(timezone)
        self._max_nights = max_nights
        self._deadline = deadline
        self._cache: cachetools.TTLCache[CacheKey, str] = cachetools.TTLCache(
            maxsize=cache_size, ttl=cache_seconds
        )

    @classmethod
    def from_settings(cls, client: Beds24Client, settings: Settings) -> AvailabilityChecker:
        return cls(
            client,
            timezone=settings.timezone,
            max_nights=settings.beds24_max_nights,
            deadline=settings.beds24_deadline_seconds,
            cache_seconds=settings.beds24_cache_seconds,
            cache_size=settings.beds24_cache_size,
        )

    def now(self) -> datetime:
        """The business's current time (``WABOT_TIMEZONE``), which "today" is taken from."""
        return datetime.now(self._zone)

    async def check(self, args: dict[str, Any]) -> str:
        """The model's answer to one call (always a string; see the module)."""
        stay = check_stay(
            str(args.get("startDate") or ""),
            str(args.get("endDate") or ""),
            now=self.now(),
            max_nights=self._max_nights,
        )
        if isinstance(stay, DateProblem):
            log.info(
                "check_availability: %s (%s to %s)",
                stay.kind,
                args.get("startDate"),
                args.get("endDate"),
            )
            return stay.message
        ids: dict[str, int | None] = {}
        for name in ("propertyId", "roomId"):
            value = args.get(name)
            if value is not None and (
                not isinstance(value, int) or isinstance(value, bool) or value <= 0
            ):
                return f"Error: {name} debe ser un número entero positivo (o null), no {value!r}."
            ids[name] = value
        key: CacheKey = (
            stay.check_in.isoformat(),
            stay.check_out.isoformat(),
            ids["propertyId"],
            ids["roomId"],
        )
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        with trio.move_on_after(self._deadline):
            try:
                rooms = await self._client.calendar(
                    stay.check_in,
                    stay.check_out - timedelta(days=1),
                    property_id=ids["propertyId"],
                    room_id=ids["roomId"],
                )
            except Beds24Error as exc:
                log.warning("check_availability: Beds24 failed: %s", exc)
                return BOOKING_SYSTEM_DOWN
            text = describe(stay, rooms)
            self._cache[key] = text
            return text
        log.warning("check_availability: no answer within %.1f s", self._deadline)
        return BOOKING_SYSTEM_DOWN


def availability_tool(
    checker: AvailabilityChecker, *, interim: str | None, deadline: float
) -> Tool:
    """The tool the model sees, bound to ``checker``."""

    async def handler(context: ToolContext, args: dict[str, Any]) -> str:
        return await checker.check(args)

    return Tool(
        name=NAME,
        description=DESCRIPTION,
        parameters=PARAMETERS,
        handler=handler,
        # The check answers within its own deadline; this one only backs it up.
        timeout=deadline + 5.0,
        interim=interim,
    )
