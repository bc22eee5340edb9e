"""A Beds24 calendar turned into what the model reads: options for a stay, as one string.

``describe(stay, rooms)`` is pure. The rules:

- A room's night is available when Beds24 says ``numAvail > 0`` and its price is above 0.
- Rooms are aggregated **per property** (``aggregate``): a property has a night when any of
  its rooms has it, at the lowest price among them; its name is its first room's. (The
  original bot let a property's rooms overwrite each other.)
- A property available every night is a *complete* option: its total and price per night,
  cheapest first, at most ``MAX_COMPLETE`` shown.
- *Alternatives* combine apartments when no single one covers the stay: consecutive
  segments in different properties (``splits``), found by three greedy strategies (the
  longest stay in one place, the lowest price per night, and each of up to two properties
  forced as the first), de-duplicated by their sequence of properties and sorted by
  (transfers, total). How many are kept depends on the complete options: none, up to 3
  alternatives of up to 3 transfers; one, up to 2 of 1 transfer; two or more, 1 of 1 transfer.
- Amounts are written with comma grouping, ``$1,234,000``, the form the validator reads back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import date, timedelta

import attrs

from actors.booking.dates import Stay
from actors.upstream.beds24 import RoomCalendar

MAX_COMPLETE = 3
#: (alternatives kept, transfers allowed) by the number of complete options (2: two or more).
SPLIT_LIMITS = {0: (3, 3), 1: (2, 1), 2: (1, 1)}
#: How many properties strategy 3 tries as the first of a combination.
FORCED_STARTS = 2


@attrs.frozen
class PropertyNights:
    """One property's available nights of a stay, each at its lowest price."""

    property_id: int
    name: str
    prices: dict[date, float]

    def run(self, nights: Sequence[date], index: int) -> int:
        """How many consecutive nights from ``nights[index]`` this property has."""
        count = 0
        while index + count < len(nights) and nights[index + count] in self.prices:
            count += 1
        return count

    def cost(self, days: Iterable[date]) -> float:
        return sum(self.prices[day] for day in days)


@attrs.frozen
class Segment:
    place: PropertyNights
    nights: tuple[date, ...]

    @property
    def total(self) -> float:
        return self.place.cost(self.nights)


@attrs.frozen
class Split:
    segments: tuple[Segment, ...]

    @property
    def transfers(self) -> int:
        return len(self.segments) - 1

    @property
    def total(self) -> float:
        return sum(segment.total for segment in self.segments)

    @property
    def key(self) -> tuple[str, ...]:
        return tuple(segment.place.name for segment in self.segments)


def aggregate(rooms: Sequence[RoomCalendar], stay: Stay) -> list[PropertyNights]:
    """The properties of ``rooms`` with their available nights of ``stay`` (first seen first)."""
    wanted = set(stay.nights)
    names: dict[int, str] = {}
    prices: dict[int, dict[date, float]] = {}
    for room in rooms:
        names.setdefault(room.property_id, room.name)
        nights = prices.setdefault(room.property_id, {})
        for day, (available, price) in room.days.items():
            if day in wanted and available > 0 and price > 0:
                nights[day] = min(price, nights.get(day, price))
    return [PropertyNights(pid, names[pid], prices[pid]) for pid in names]


def complete_options(places: Sequence[PropertyNights], stay: Stay) -> list[PropertyNights]:
    """The properties available every night, cheapest first."""
    nights = stay.nights
    whole = [p for p in places if all(day in p.prices for day in nights)]
    return sorted(whole, key=lambda p: (p.cost(nights), p.name))


#: Picks one (property, run length) of the candidates at ``index`` of the nights.
Chooser = Callable[[list[tuple[PropertyNights, int]], list[date], int], tuple[PropertyNights, int]]


def _average(candidate: tuple[PropertyNights, int], nights: list[date], index: int) -> float:
    place, length = candidate
    return place.cost(nights[index : index + length]) / length


def _longest(
    candidates: list[tuple[PropertyNights, int]], nights: list[date], index: int
) -> tuple[PropertyNights, int]:
    """Strategy 1: the longest stay in one place (the cheaper one of equal length)."""
    return max(candidates, key=lambda c: (c[1], -_average(c, nights, index)))


def _cheapest(
    candidates: list[tuple[PropertyNights, int]], nights: list[date], index: int
) -> tuple[PropertyNights, int]:
    """Strategy 2: the lowest price per night (the longer one of equal price)."""
    return min(candidates, key=lambda c: (_average(c, nights, index), -c[1]))


def _chain(
    places: Sequence[PropertyNights],
    nights: list[date],
    choose: Chooser,
    first: PropertyNights | None = None,
) -> Split | None:
    """Consecutive segments covering every night, each chosen by ``choose``; None if a gap."""
    segments: list[Segment] = []
    index = 0
    while index < len(nights):
        candidates = [(p, p.run(nights, index)) for p in places]
        candidates = [c for c in candidates if c[1] > 0]
        if segments:
            candidates = [c for c in candidates if c[0] is not segments[-1].place]
        if first is not None and not segments:
            candidates = [c for c in candidates if c[0] is first]
        if not candidates:
            return None
        place, length = choose(candidates, nights, index)
        segments.append(Segment(place, tuple(nights[index : index + length])))
        index += length
    return Split(tuple(segments))


def splits(places: Sequence[PropertyNights], stay: Stay, complete: int) -> list[Split]:
    """Combinations of apartments covering the stay (see the module for which are kept)."""
    nights = stay.nights
    keep, max_transfers = SPLIT_LIMITS[min(complete, 2)]
    starters = sorted(
        (p for p in places if p.run(nights, 0) > 0),
        key=lambda p: (-p.run(nights, 0), p.cost(nights[: p.run(nights, 0)])),
    )[:FORCED_STARTS]
    found = [
        _chain(places, nights, _longest),
        _chain(places, nights, _cheapest),
        *(_chain(places, nights, _longest, first=p) for p in starters),
    ]
    unique: dict[tuple[str, ...], Split] = {}
    for split in found:
        if split is not None and 1 <= split.transfers <= max_transfers:
            unique.setdefault(split.key, split)
    ranked = sorted(unique.values(), key=lambda s: (s.transfers, s.total))
    return ranked[:keep]


# -- the text ------------------------------------------------------------------------------------


def money(amount: float) -> str:
    """``$1,234,000`` (whole amounts) or ``$85.50``: comma grouping, as the validator reads."""
    if float(amount).is_integer():
        return f"${int(amount):,}"
    return f"${amount:,.2f}"


def day(value: date) -> str:
    return value.strftime("%d/%m/%Y")


def plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def describe(stay: Stay, rooms: Sequence[RoomCalendar]) -> str:
    """The availability of ``stay`` among ``rooms``, as the model reads it."""
    nights = stay.nights
    places = aggregate(rooms, stay)
    whole = complete_options(places, stay)
    combined = splits(places, stay, len(whole))
    lines = [
        f"📅 Disponibilidad: {day(stay.check_in)} al {day(stay.check_out)} "
        f"({plural(len(nights), 'noche', 'noches')})",
        "",
    ]
    if whole:
        lines.append(
            "✅ APARTAMENTOS DISPONIBLES "
            f"({plural(len(whole), 'Apto Disponible', 'Aptos Disponibles')}):"
        )
        for place in whole[:MAX_COMPLETE]:
            total = place.cost(nights)
            lines.append(
                f"🏠 {place.name} - {money(total)} total ({money(total / len(nights))}/noche)"
            )
    else:
        lines.append("❌ Ningún apartamento está disponible todas las noches de esas fechas.")
    if combined:
        lines += [
            "",
            "🔄 ALTERNATIVAS "
            f"({plural(len(combined), 'opción', 'opciones')} cambiando de apartamento, "
            "solo si es necesario):",
        ]
        for number, split in enumerate(combined, 1):
            lines.append(
                f"🏠 Opción {number} ({plural(split.transfers, 'traslado', 'traslados')}) - "
                f"{money(split.total)} total"
            )
            for segment in split.segments:
                leave = segment.nights[-1] + timedelta(days=1)
                lines.append(
                    f"   {segment.place.name}: {day(segment.nights[0])} al {day(leave)} "
                    f"({plural(len(segment.nights), 'noche', 'noches')}, {money(segment.total)})"
                )
    elif not whole:
        lines.append("No hay combinación de apartamentos que cubra todas las noches.")
    return "\n".join(lines)
