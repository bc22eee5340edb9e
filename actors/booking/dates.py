"""The rules of the stay a model asks about, as pure functions of the arguments and "now".

``check_stay(start, end, now=..., max_nights=...)`` returns either a ``Stay`` (check-in,
check-out, its nights) or a ``DateProblem`` whose ``message`` is what the model reads instead
of an availability (always a string: the model is told what to do next). In order:

1. both dates are ``YYYY-MM-DD`` and real dates, else "Error: No se pudieron procesar las
   fechas. <details>";
2. the year-hallucination fix: a date before today whose month is later than the current
   month gets the current year (a model that believes it is last year asks for
   "2025-06-10" in March 2026 and means June 2026);
3. the check-out must be after the check-in;
4. a check-in before today (in the business's time zone, ``now``'s; today is allowed) is
   answered with the technical instruction that names today's date and time, so the model
   confirms the dates with the guest or asks again;
5. at most ``max_nights`` nights (30 by default).

``now`` is an aware datetime in the business's time zone (``WABOT_TIMEZONE``): the original bot
compared in UTC and, in the Bogotá evening, refused "today" as a past date.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta

import attrs

ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

MONTHS = (
    "enero",
    "febrero",
    "marzo",
    "abril",
    "mayo",
    "junio",
    "julio",
    "agosto",
    "septiembre",
    "octubre",
    "noviembre",
    "diciembre",
)

END_BEFORE_START = "Error: La fecha de fin debe ser posterior a la fecha de inicio."


@attrs.frozen
class Stay:
    check_in: date
    check_out: date

    @property
    def nights(self) -> list[date]:
        """The nights of the stay: every date in ``[check_in, check_out)``."""
        count = (self.check_out - self.check_in).days
        return [self.check_in + timedelta(days=n) for n in range(count)]


@attrs.frozen
class DateProblem:
    """Why no availability is looked up; ``message`` is the tool's output for the model."""

    kind: str  # "format", "order", "past", "too_long"
    message: str


def parse_iso(value: str) -> date:
    """A ``YYYY-MM-DD`` date; ``ValueError`` naming the value otherwise."""
    text = value.strip()
    if not ISO_DATE.match(text):
        raise ValueError(f"{value!r} no tiene el formato YYYY-MM-DD")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{value!r} no es una fecha válida") from None


def fix_hallucinated_year(day: date, today: date) -> date:
    """``day`` with the current year when it is past and its month is later than today's."""
    if day < today and day.month > today.month:
        try:
            return day.replace(year=today.year)
        except ValueError:  # 29 February of a year that has none
            return day.replace(year=today.year, day=28)
    return day


def long_date(day: date) -> str:
    """A date as Colombian Spanish writes it in full: ``4 de diciembre de 2026``."""
    return f"{day.day} de {MONTHS[day.month - 1]} de {day.year}"


def clock(moment: datetime) -> str:
    """A time as Colombian Spanish writes it: ``01:07 p. m.``."""
    hour = moment.hour % 12 or 12
    suffix = "a. m." if moment.hour < 12 else "p. m."
    return f"{hour:02d}:{moment.minute:02d} {suffix}"


def past_dates_message(now: datetime) -> str:
    """The technical instruction for a check-in in the past: confirm the dates, or ask again."""
    return (
        "mensaje tecnico** llama nuevamente a la funcion con las fechas correctas, ya que las "
        f"fechas son pasadas, hoy es ({long_date(now.date())} y son las {clock(now)}), paso a "
        "seguir: confirma con el huesped las fechas correctas, o llama nuevamente a la funcion "
        "check_availability**"
    )


def too_long_message(max_nights: int) -> str:
    return f"Error: Búsquedas limitadas a {max_nights} noches máximo"


def check_stay(start: str, end: str, *, now: datetime, max_nights: int = 30) -> Stay | DateProblem:
    """The stay the model asked about, or why it cannot be looked up (see the module)."""
    problems = []
    parsed: list[date] = []
    for value in (start, end):
        try:
            parsed.append(parse_iso(value))
        except ValueError as exc:
            problems.append(str(exc))
    if problems:
        return DateProblem(
            "format", "Error: No se pudieron procesar las fechas. " + "; ".join(problems) + "."
        )
    today = now.date()
    check_in, check_out = (fix_hallucinated_year(day, today) for day in parsed)
    if check_in >= check_out:
        return DateProblem("order", END_BEFORE_START)
    if check_in < today:
        return DateProblem("past", past_dates_message(now))
    if (check_out - check_in).days > max_nights:
        return DateProblem("too_long", too_long_message(max_nights))
    return Stay(check_in, check_out)
