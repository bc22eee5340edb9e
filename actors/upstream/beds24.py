"""Beds24 API v2 client: the per-day calendar of rooms (availability and prices).

Authentication (Beds24 API v2): every call carries a ``token`` header. That token is either a
*long-life token* (read only, made in Beds24's control panel; enough to read availability), or
one made from a *refresh token* with ``GET /authentication/token`` (header ``refreshToken``),
which answers ``{"token", "expiresIn"}`` (24 h). The client exchanges the refresh token on
first use, keeps the token until shortly before it expires, and exchanges it again when Beds24
answers 401 (a token revoked or expired early), once per call.

``calendar`` reads ``GET /inventory/rooms/calendar`` for a range of nights (optionally one
property or one room) and returns one ``RoomCalendar`` per room, its ``from``/``to`` ranges
expanded to single days. Every failure, an error status, ``success: false``, a malformed
body, a network error or a timeout, raises ``Beds24Error``: never an empty result that would
read as "nothing available". ``retryable`` is Beds24's one rule of what gets another attempt
(429 honouring ``Retry-After``, 5xx, network errors), with the bounded backoff of
``RetryPolicy``. One ``httpx.AsyncClient`` per client; close it with ``aclose``.
"""

from __future__ import annotations

import logging
from datetime import date, timedelta
from typing import Any

import attrs
import httpx
import trio

from actors.upstream.retry import RetryPolicy, UpstreamHTTPError, http_retryable, parse_retry_after

log = logging.getLogger("actors.upstream.beds24")

CALENDAR_PATH = "/inventory/rooms/calendar"
TOKEN_PATH = "/authentication/token"
#: A token made from the refresh token is renewed this long before Beds24 says it expires.
TOKEN_MARGIN_SECONDS = 300.0
#: A day calendar entry spans at most this many days (a guard against absurd ranges).
MAX_ENTRY_DAYS = 3660


class Beds24Error(UpstreamHTTPError):
    """Beds24 answered with an error, or could not be reached within the attempts allowed."""


#: Beds24's retryable failures (a ``retry`` classifier): 429, 5xx, dropped connections.
retryable = http_retryable


@attrs.frozen
class RoomCalendar:
    """One room's days: ``days[d] = (units available, price of the night)``."""

    property_id: int
    room_id: int
    name: str
    days: dict[date, tuple[int, float]]


class Beds24Client:
    """One client per process; owns its ``httpx.AsyncClient`` (close it with ``aclose``)."""

    def __init__(
        self,
        *,
        base_url: str,
        token: str | None,
        refresh_token: str | None,
        timeout: float,
        policy: RetryPolicy,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not token and not refresh_token:
            raise ValueError("Beds24 needs a long-life token or a refresh token")
        self._long_life = token or None
        self._refresh_token = refresh_token or None
        self._token: str | None = None
        self._expires_at = 0.0
        self._token_lock = trio.Lock()
        self._policy = policy
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"Accept": "application/json"},
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            limits=httpx.Limits(max_connections=8, max_keepalive_connections=2),
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Beds24Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- authentication ------------------------------------------------------------------------

    async def _current_token(self, *, stale: str | None = None) -> str:
        """The token to send; ``stale`` is one Beds24 refused (exchange the refresh token)."""
        if self._refresh_token is None:
            assert self._long_life is not None
            return self._long_life
        async with self._token_lock:
            fresh = self._token is not None and self._token != stale
            if fresh and trio.current_time() < self._expires_at:
                assert self._token is not None
                return self._token
            self._token, self._expires_at = await self._exchange()
            return self._token

    async def _exchange(self) -> tuple[str, float]:
        """``GET /authentication/token``: a token and when to renew it (trio's clock)."""
        assert self._refresh_token is not None
        response = await self._http.get(TOKEN_PATH, headers={"refreshToken": self._refresh_token})
        data = _checked_json(response, "GET " + TOKEN_PATH)
        token = data.get("token")
        if not isinstance(token, str) or not token:
            raise Beds24Error(f"GET {TOKEN_PATH}: no token in the answer")
        expires_in = data.get("expiresIn")
        seconds = float(expires_in) if isinstance(expires_in, int | float) else 3600.0
        log.info("Beds24: new token from the refresh token (expires in %.0f s)", seconds)
        return token, trio.current_time() + max(seconds - TOKEN_MARGIN_SECONDS, seconds / 2)

    # -- the calendar --------------------------------------------------------------------------

    async def calendar(
        self,
        first_night: date,
        last_night: date,
        *,
        property_id: int | None = None,
        room_id: int | None = None,
    ) -> list[RoomCalendar]:
        """Every room's availability and price from ``first_night`` to ``last_night``."""
        params: dict[str, Any] = {
            "startDate": first_night.isoformat(),
            "endDate": last_night.isoformat(),
            "includeNumAvail": "true",
            "includePrices": "true",
        }
        if property_id is not None:
            params["propertyId"] = property_id
        if room_id is not None:
            params["roomId"] = room_id
        what = f"GET {CALENDAR_PATH}"
        try:
            async for attempt in self._policy.retrying(retryable, what=what):
                with attempt:
                    token = await self._current_token()
                    response = await self._get(params, token)
                    if response.status_code == 401 and self._refresh_token is not None:
                        token = await self._current_token(stale=token)
                        response = await self._get(params, token)
                    return parse_calendar(_checked_json(response, what))
        except httpx.HTTPError as exc:
            raise Beds24Error(f"{what}: {exc!r}") from exc
        raise AssertionError("unreachable: the retry loop returns or raises")

    async def _get(self, params: dict[str, Any], token: str) -> httpx.Response:
        return await self._http.get(CALENDAR_PATH, params=params, headers={"token": token})


def _checked_json(response: httpx.Response, what: str) -> dict[str, Any]:
    """The body of a successful answer; ``Beds24Error`` for an error status or body."""
    try:
        data = response.json()
    except ValueError:
        data = None
    if response.status_code >= 400:
        detail = data.get("error") if isinstance(data, dict) else None
        retry_after = parse_retry_after(
            response.headers.get("retry-after")
            or response.headers.get("x-five-min-limit-resets-in")
        )
        raise Beds24Error(
            f"{what}: HTTP {response.status_code}" + (f": {detail}" if detail else ""),
            status=response.status_code,
            retry_after=retry_after,
        )
    if not isinstance(data, dict):
        raise Beds24Error(f"{what}: invalid JSON (HTTP {response.status_code})")
    if data.get("success") is False:
        raise Beds24Error(f"{what}: success false: {data.get('error') or 'no reason given'}")
    return data


def _day(value: Any) -> date:
    if not isinstance(value, str):
        raise ValueError(f"not a date: {value!r}")
    return date.fromisoformat(value)


def parse_calendar(data: dict[str, Any]) -> list[RoomCalendar]:
    """The rooms of a calendar answer, their ``from``/``to`` entries expanded to days."""
    rooms = data.get("data")
    if not isinstance(rooms, list):
        raise Beds24Error("calendar: the answer has no data list")
    out: list[RoomCalendar] = []
    try:
        for room in rooms:
            days: dict[date, tuple[int, float]] = {}
            for entry in room.get("calendar") or ():
                start = _day(entry["from"])
                end = _day(entry.get("to") or entry["from"])
                span = (end - start).days
                if span < 0 or span > MAX_ENTRY_DAYS:
                    raise ValueError(f"calendar entry from {start} to {end}")
                value = (int(entry.get("numAvail") or 0), float(entry.get("price1") or 0))
                for offset in range(span + 1):
                    days[start + timedelta(days=offset)] = value
            out.append(
                RoomCalendar(
                    property_id=int(room["propertyId"]),
                    room_id=int(room["roomId"]),
                    name=str(room.get("name") or f"Habitación {room['roomId']}"),
                    days=days,
                )
            )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise Beds24Error(f"calendar: unexpected answer: {exc!r}") from None
    return out
