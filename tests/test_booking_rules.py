"""The booking rules as pure functions: dates, aggregation, alternatives, text, validator."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from actors.booking.availability import aggregate, complete_options, describe, money, splits
from actors.booking.dates import (
    END_BEFORE_START,
    DateProblem,
    Stay,
    check_stay,
    clock,
    fix_hallucinated_year,
    long_date,
)
from actors.booking.validator import check_answer
from actors.settings import Settings, SettingsError
from actors.upstream.beds24 import Beds24Error, RoomCalendar, parse_calendar
from actors.validation import ToolOutput, Verdict, as_verdict, chain

BOGOTA = ZoneInfo("America/Bogota")
NOW = datetime(2026, 3, 10, 15, 7, tzinfo=BOGOTA)


def stay(start: str, end: str, **kwargs: object) -> Stay | DateProblem:
    return check_stay(start, end, now=NOW, **kwargs)  # type: ignore[arg-type]


# -- dates ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end", "detail"),
    [
        ("10/03/2026", "2026-03-12", "'10/03/2026' no tiene el formato YYYY-MM-DD"),
        ("2026-3-10", "2026-03-12", "no tiene el formato"),
        ("2026-02-30", "2026-03-12", "'2026-02-30' no es una fecha válida"),
        ("", "2026-03-12", "no tiene el formato"),
    ],
)
def test_dates_must_be_iso(start: str, end: str, detail: str) -> None:
    result = stay(start, end)
    assert isinstance(result, DateProblem) and result.kind == "format"
    assert result.message.startswith("Error: No se pudieron procesar las fechas. ")
    assert detail in result.message


def test_year_hallucination_fix_takes_the_current_year_for_a_later_month() -> None:
    today = NOW.date()
    assert fix_hallucinated_year(date(2025, 6, 10), today) == date(2026, 6, 10)
    # An earlier month of last year is really past: not "fixed" into the past of this year.
    assert fix_hallucinated_year(date(2025, 2, 10), today) == date(2025, 2, 10)
    # The same month is not a later month.
    assert fix_hallucinated_year(date(2025, 3, 20), today) == date(2025, 3, 20)
    # A future date is left alone.
    assert fix_hallucinated_year(date(2027, 1, 5), today) == date(2027, 1, 5)
    assert fix_hallucinated_year(date(2024, 2, 29), date(2025, 1, 3)) == date(2025, 2, 28)
    result = stay("2025-06-10", "2025-06-13")
    assert result == Stay(date(2026, 6, 10), date(2026, 6, 13))


def test_end_must_be_after_start() -> None:
    for end in ("2026-04-01", "2026-03-30"):
        result = stay("2026-04-01", end)
        assert isinstance(result, DateProblem) and result.message == END_BEFORE_START


def test_a_past_check_in_gets_the_technical_instruction_with_today() -> None:
    result = stay("2026-03-09", "2026-03-12")
    assert isinstance(result, DateProblem) and result.kind == "past"
    assert result.message.startswith("mensaje tecnico** llama nuevamente a la funcion")
    assert "hoy es (10 de marzo de 2026 y son las 03:07 p. m.)" in result.message
    assert result.message.endswith("llama nuevamente a la funcion check_availability**")
    # Today is allowed.
    assert stay("2026-03-10", "2026-03-11") == Stay(date(2026, 3, 10), date(2026, 3, 11))


def test_today_is_the_business_s_today_not_utc_s() -> None:
    # 21:30 in Bogotá is already tomorrow in UTC: the original refused "today" then.
    evening = datetime(2026, 3, 10, 21, 30, tzinfo=BOGOTA)
    result = check_stay("2026-03-10", "2026-03-12", now=evening)
    assert result == Stay(date(2026, 3, 10), date(2026, 3, 12))


def test_thirty_nights_at_most() -> None:
    assert isinstance(stay("2026-04-01", "2026-05-01"), Stay)  # 30 nights
    result = stay("2026-04-01", "2026-05-02")
    assert isinstance(result, DateProblem)
    assert result.message == "Error: Búsquedas limitadas a 30 noches máximo"
    short = stay("2026-04-01", "2026-04-09", max_nights=7)
    assert isinstance(short, DateProblem) and "7 noches" in short.message


def test_spanish_date_and_clock() -> None:
    assert long_date(date(2026, 12, 4)) == "4 de diciembre de 2026"
    assert clock(datetime(2026, 1, 1, 0, 5)) == "12:05 a. m."
    assert clock(datetime(2026, 1, 1, 12, 0)) == "12:00 p. m."
    assert clock(datetime(2026, 1, 1, 9, 41)) == "09:41 a. m."


# -- aggregation, alternatives, text --------------------------------------------------------------

D = date(2026, 5, 1)


def night(n: int) -> date:
    return D + timedelta(days=n)


def room(
    pid: int, rid: int, name: str, free: set[int], price: float = 100_000, nights: int = 4
) -> RoomCalendar:
    return RoomCalendar(
        pid, rid, name, {night(n): (1 if n in free else 0, price) for n in range(nights)}
    )


STAY = Stay(D, night(4))  # nights 0..3


def test_rooms_of_one_property_add_up_at_the_lowest_price() -> None:
    rooms = [
        room(1, 11, "Apartamento 1722-B", {0, 1}, price=300_000),
        room(1, 12, "Apartamento 1722-B bis", {1, 2, 3}, price=280_000),
    ]
    (place,) = aggregate(rooms, STAY)
    assert place.name == "Apartamento 1722-B"  # the first room's name
    assert place.prices == {
        night(0): 300_000,
        night(1): 280_000,
        night(2): 280_000,
        night(3): 280_000,
    }
    assert complete_options([place], STAY) == [place]


def test_unavailable_or_free_nights_do_not_count() -> None:
    calendar = RoomCalendar(1, 11, "A", {night(0): (1, 0.0), night(1): (0, 90.0)})
    (place,) = aggregate([calendar], STAY)
    assert place.prices == {}


def test_complete_options_cheapest_first_and_at_most_three_shown() -> None:
    rooms = [
        room(n, n * 10, f"Apartamento 10{n}-A", {0, 1, 2, 3}, price=100_000 + n * 1000)
        for n in (4, 1, 3, 2)
    ]
    text = describe(STAY, rooms)
    assert "(4 Aptos Disponibles)" in text
    lines = [line for line in text.splitlines() if line.startswith("🏠")]
    assert lines == [
        "🏠 Apartamento 101-A - $404,000 total ($101,000/noche)",
        "🏠 Apartamento 102-A - $408,000 total ($102,000/noche)",
        "🏠 Apartamento 103-A - $412,000 total ($103,000/noche)",
    ]
    assert "ALTERNATIVAS" not in text  # every option is complete: no combination needed


def test_alternatives_combine_apartments_when_none_covers_the_stay() -> None:
    rooms = [
        room(1, 11, "Apartamento 1317-A", {0, 1}, price=250_000),
        room(2, 21, "Apartaestudio 715-C", {2, 3}, price=180_000),
        room(3, 31, "Apartamento 1722-B", {1, 2, 3}, price=300_000),
    ]
    places = aggregate(rooms, STAY)
    found = splits(places, STAY, complete=0)
    keys = [s.key for s in found]
    # One transfer is better than two; then the cheaper one first.
    assert keys[0] == ("Apartamento 1317-A", "Apartaestudio 715-C")
    assert found[0].total == 2 * 250_000 + 2 * 180_000
    assert all(s.transfers == 1 for s in found)
    assert len(set(keys)) == len(keys)
    text = describe(STAY, rooms)
    assert "❌ Ningún apartamento está disponible todas las noches" in text
    assert "🏠 Opción 1 (1 traslado) - $860,000 total" in text
    assert "   Apartamento 1317-A: 01/05/2026 al 03/05/2026 (2 noches, $500,000)" in text
    assert "   Apartaestudio 715-C: 03/05/2026 al 05/05/2026 (2 noches, $360,000)" in text


def test_how_many_alternatives_depends_on_the_complete_options() -> None:
    rooms = [
        room(1, 11, "A 1", {0, 1}, price=50_000),
        room(2, 21, "A 2", {2, 3}, price=60_000),
        room(3, 31, "A 3", {0}, price=40_000),
        room(4, 41, "A 4", {1, 2, 3}, price=200_000),
        room(5, 51, "A 5", {0, 1, 2}, price=150_000),
        room(6, 61, "A 6", {3}, price=70_000),
    ]
    places = aggregate(rooms, STAY)
    # Longest stays: A 5 then A 2; cheapest nights: A 3, A 1, A 2; A 1 forced first: A 1, A 2.
    assert [s.key for s in splits(places, STAY, complete=0)] == [
        ("A 1", "A 2"),
        ("A 5", "A 2"),
        ("A 3", "A 1", "A 2"),
    ]
    assert len(splits(places, STAY, complete=1)) == 2
    assert len(splits(places, STAY, complete=2)) == 1
    assert all(s.transfers <= 1 for s in splits(places, STAY, complete=1))


def test_a_gap_no_apartment_covers_means_no_alternative() -> None:
    rooms = [room(1, 11, "A 1", {0, 1}), room(2, 21, "A 2", {3})]
    text = describe(STAY, rooms)
    assert "No hay combinación de apartamentos que cubra todas las noches." in text
    assert "📅 Disponibilidad: 01/05/2026 al 05/05/2026 (4 noches)" in text


def test_money_is_comma_grouped() -> None:
    assert money(1_234_000) == "$1,234,000"
    assert money(85.5) == "$85.50"


def test_calendar_entries_are_expanded_and_bad_answers_raise() -> None:
    (parsed,) = parse_calendar(
        {
            "success": True,
            "data": [
                {
                    "propertyId": 1,
                    "roomId": 11,
                    "name": "Apartamento 1317-A",
                    "calendar": [
                        {"from": "2026-05-01", "to": "2026-05-03", "numAvail": 1, "price1": 90},
                        {"from": "2026-05-04", "numAvail": 0, "price1": 90},
                    ],
                }
            ],
        }
    )
    assert parsed.days[date(2026, 5, 2)] == (1, 90.0)
    assert parsed.days[date(2026, 5, 4)] == (0, 90.0)
    assert len(parsed.days) == 4
    with pytest.raises(Beds24Error):
        parse_calendar({"success": True})
    with pytest.raises(Beds24Error):
        parse_calendar({"data": [{"roomId": 1, "calendar": []}]})


# -- the validator --------------------------------------------------------------------------------

OUTPUT = (
    "📅 Disponibilidad: 01/05/2026 al 03/05/2026 (2 noches)\n\n"
    "✅ APARTAMENTOS DISPONIBLES (2 Aptos Disponibles):\n"
    "🏠 Apartamento 1317-A - $500,000 total ($250,000/noche)\n"
    "🏠 Apartaestudio 715-C - $360,000 total ($180,000/noche)"
)
AVAILABILITY = ToolOutput("check_availability", "{}", OUTPUT, True)


def test_validator_corrects_a_name_that_shares_the_number() -> None:
    verdict = check_answer("Tengo el Apto 1317-B por $500,000 en total.", [AVAILABILITY])
    assert verdict is not None
    assert verdict.text == "Tengo el Apto 1317-A por $500,000 en total."
    assert verdict.instruction is None and verdict.problems == ()


def test_validator_accepts_prices_whatever_the_separators() -> None:
    answer = "El Apartaestudio 715-C cuesta $180.000 la noche ($360.000 COP en total)."
    verdict = check_answer(answer, [AVAILABILITY])
    assert verdict == Verdict()


def test_validator_asks_again_for_a_price_the_tool_never_gave() -> None:
    verdict = check_answer("El Apartamento 1317-A cuesta $230,000 la noche.", [AVAILABILITY])
    assert verdict is not None and verdict.text is None
    assert verdict.problems == (
        "el precio $230,000 no aparece en el resultado de check_availability",
    )
    assert verdict.instruction and "$230,000" in verdict.instruction


def test_validator_ignores_turns_without_availability_and_failed_checks() -> None:
    escalation = ToolOutput("escalate_to_human", "{}", '{"escalated": true}', True)
    assert check_answer("Son $999,999.", [escalation]) is None
    failed = ToolOutput("check_availability", "{}", "the tool timed out", False)
    assert check_answer("Son $999,999.", [failed]) is None


def test_validators_chain_on_each_other_s_text() -> None:
    def second(answer: str, outputs: object) -> str | None:
        return "revisa" if "1317-A" in answer else None

    combined = chain([check_answer, second])
    verdict = as_verdict(combined("Apto 1317-B: $500,000", [AVAILABILITY]))
    assert verdict.text == "Apto 1317-A: $500,000"
    assert verdict.instruction == "revisa" and verdict.problems == ("revisa",)


def test_both_beds24_credentials_is_a_settings_error() -> None:
    env = {"BEDS24_TOKEN": "a", "BEDS24_REFRESH_TOKEN": "b"}
    with pytest.raises(SettingsError, match="not both"):
        Settings.from_env(env, dotenv=None)
    assert Settings.from_env({"BEDS24_TOKEN": "a"}, dotenv=None).beds24
    assert not Settings.from_env({}, dotenv=None).beds24
