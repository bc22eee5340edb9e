"""FakeBeds24: a loopback Beds24 API v2 (authentication and the rooms' calendar).

Serves what wabot's ``check_availability`` uses:

- ``GET /v2/authentication/token`` with a ``refreshToken`` header: a token for 24 h
  (``{"token", "expiresIn"}``), 401 for an unknown refresh token;
- ``GET /v2/inventory/rooms/calendar``: the per-day availability and price of every room
  (or of the ``propertyId``/``roomId`` asked for) from ``startDate`` to ``endDate``, as
  ``{"success": true, "data": [{"propertyId", "roomId", "name", "calendar": [{"from", "to",
  "numAvail", "price1"}]}]}`` with equal consecutive days merged into one entry, the way
  Beds24 answers. The query is validated against ``schemas/beds24_calendar_query.json``
  (and ``endDate`` must not be before ``startDate``); a missing or unknown ``token`` header
  is 401. Errors have Beds24's shape ``{"success": false, "type": "error", "code", "error"}``.

Calendar data is per room: a default number of units and nightly price for every date, plus
days set (``set_days``) or booked (``book``). ``expire_tokens`` revokes every token made from the
refresh token, as an early expiry would. Faults and latency come from ``sandbox.faults``.
``demo`` fills the three apartments ``make run`` shows, booked so that some stays need a
change of apartment.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any, ClassVar

import attrs

from sandbox.base import FakeServer, Request, Response, Route, json_response, route
from sandbox.faults import FaultRule, Faults

TOKEN_SECONDS = 86400


@attrs.define
class FakeRoom:
    """One room of one property: ``units`` and ``price`` by default, ``days`` where set."""

    property_id: int
    room_id: int
    name: str
    units: int = 1
    price: float = 0.0
    days: dict[date, tuple[int, float]] = attrs.field(factory=dict)

    def on(self, day: date) -> tuple[int, float]:
        return self.days.get(day, (self.units, self.price))


class FakeBeds24(FakeServer):
    """A loopback Beds24 API v2. Start it with ``await nursery.start(fake.serve)``; the started
    value (and ``url``) is the base URL including ``/v2``.

    ``token`` is a long-life token; ``refresh_token`` (when given) exchanges for short ones.
    """

    SCHEMAS: ClassVar[tuple[str, ...]] = ("beds24_calendar_query",)
    URL_SUFFIX: ClassVar[str] = "/v2"

    def __init__(
        self,
        token: str,
        *,
        refresh_token: str | None = None,
        faults: Faults | None = None,
        max_calls: int = 100_000,
        max_tokens: int = 1000,
    ) -> None:
        super().__init__(token, faults=faults, max_calls=max_calls)
        self.refresh_token = refresh_token
        self.rooms: dict[int, FakeRoom] = {}
        self.issued: list[str] = []
        self.max_tokens = max_tokens

    # ----------------------------------------------------------------- calendar data
    def add_room(
        self, property_id: int, room_id: int, name: str, *, price: float, units: int = 1
    ) -> FakeRoom:
        """A room available ``units`` times at ``price`` a night, every night until set."""
        room = FakeRoom(property_id, room_id, name, units, price)
        self.rooms[room_id] = room
        return room

    def set_days(
        self,
        room_id: int,
        first: date,
        until: date,
        *,
        units: int | None = None,
        price: float | None = None,
    ) -> None:
        """Set the units and/or price of the nights ``[first, until)``."""
        room = self.rooms[room_id]
        day = first
        while day < until:
            current_units, current_price = room.on(day)
            room.days[day] = (
                current_units if units is None else units,
                current_price if price is None else price,
            )
            day += timedelta(days=1)

    def book(self, room_id: int, check_in: date, check_out: date) -> None:
        """One unit fewer on the nights ``[check_in, check_out)``."""
        room = self.rooms[room_id]
        day = check_in
        while day < check_out:
            units, price = room.on(day)
            room.days[day] = (max(0, units - 1), price)
            day += timedelta(days=1)

    def demo(self, today: date) -> FakeBeds24:
        """Three apartments (one with two rooms), booked so that some stays must combine."""
        self.add_room(1001, 10011, "Apartamento 1317-A", price=250_000)
        self.add_room(1002, 10021, "Apartamento 1722-B", price=280_000)
        self.add_room(1002, 10022, "Apartamento 1722-B", price=300_000)
        self.add_room(1003, 10031, "Apartaestudio 715-C", price=180_000)
        at = lambda n: today + timedelta(days=n)  # noqa: E731
        self.book(10011, at(3), at(7))
        self.book(10031, at(1), at(3))
        self.book(10031, at(6), at(9))
        self.book(10021, at(2), at(6))
        self.book(10022, at(2), at(6))
        self.set_days(10031, at(20), at(30), price=210_000)
        return self

    def expire_tokens(self) -> None:
        """Revoke every token made from the refresh token (the next call gets 401)."""
        self.issued.clear()

    # ----------------------------------------------------------------- FakeServer
    def routes(self) -> list[Route]:
        return [
            route("GET", "/v2/authentication/token", self._token, auth=False, body="none"),
            route(
                "GET",
                "/v2/inventory/rooms/calendar",
                self._calendar,
                body="none",
                query_schema="beds24_calendar_query",
            ),
        ]

    def _authorized(self, headers: Mapping[str, str]) -> bool:
        token = headers.get("token", "")
        return bool(token) and (token == self.token or token in self.issued)

    def unauthorized(self) -> Response:
        return self.error_response(401, "Token is missing or invalid")

    def error_response(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        body = {"success": False, "type": "error", "code": status, "error": message}
        return json_response(status, body, headers)

    # ----------------------------------------------------------------- handlers
    async def _token(self, request: Request, fault: FaultRule | None) -> Response:
        given = request.headers.get("refreshtoken", "")
        if not self.refresh_token or given != self.refresh_token:
            return self.error_response(401, "Refresh token is missing or invalid")
        token = f"b24-{secrets.token_hex(16)}"
        self.issued.append(token)
        del self.issued[: -self.max_tokens]
        return json_response(200, {"token": token, "expiresIn": TOKEN_SECONDS})

    async def _calendar(self, request: Request, fault: FaultRule | None) -> Response:
        try:
            start = date.fromisoformat(request.query["startDate"])
            end = date.fromisoformat(request.query["endDate"])
        except ValueError as exc:
            return self.error_response(400, f"Invalid date: {exc}")
        if end < start:
            return self.error_response(400, "endDate must not be before startDate")
        wanted_property = request.query.get("propertyId")
        wanted_room = request.query.get("roomId")
        data: list[dict[str, Any]] = []
        for room in self.rooms.values():
            if wanted_property is not None and str(room.property_id) != wanted_property:
                continue
            if wanted_room is not None and str(room.room_id) != wanted_room:
                continue
            data.append(
                {
                    "roomId": room.room_id,
                    "propertyId": room.property_id,
                    "name": room.name,
                    "calendar": _entries(room, start, end),
                }
            )
        return json_response(
            200, {"success": True, "type": "calendar", "count": len(data), "data": data}
        )


def _entries(room: FakeRoom, start: date, end: date) -> list[dict[str, Any]]:
    """The room's days from ``start`` to ``end`` (inclusive), equal neighbours merged."""
    entries: list[dict[str, Any]] = []
    day = start
    while day <= end:
        units, price = room.on(day)
        last = entries[-1] if entries else None
        if last is not None and (last["numAvail"], last["price1"]) == (units, price):
            last["to"] = day.isoformat()
        else:
            entries.append(
                {"from": day.isoformat(), "to": day.isoformat(), "numAvail": units, "price1": price}
            )
        day += timedelta(days=1)
    return entries
