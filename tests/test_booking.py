"""check_availability end to end: webhooks in, the fake model calls the tool, the bot asks the
fake Beds24, and the answer the customer gets carries what the rules said.

The fake model's default responder calls ``check_availability`` for a message about
availability with dates in it (one call per pair), or with the exact arguments of a
``check_availability {json}`` in the text, and then quotes the tool's output in its answer.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import trio

from actors.booking.tool import BOOKING_SYSTEM_DOWN, AvailabilityChecker
from actors.upstream.beds24 import Beds24Client, Beds24Error
from actors.upstream.retry import RetryPolicy
from sandbox import payloads
from sandbox.openai import ResponseRequest
from tests.harness import (
    BEDS24_REFRESH_TOKEN,
    BEDS24_TOKEN,
    Fakes,
    beds24_on,
    make_settings,
    open_bot,
    open_fakes,
    wait_until,
)

USER = "573001234567"
CHAT = f"{USER}@s.whatsapp.net"
BOGOTA = ZoneInfo("America/Bogota")
CALENDAR = "/v2/inventory/rooms/calendar"


def today() -> date:
    return datetime.now(BOGOTA).date()


def iso(days: int) -> str:
    return (today() + timedelta(days=days)).isoformat()


def apartments(fakes: Fakes) -> None:
    beds24 = fakes.beds24
    beds24.add_room(1001, 10011, "Apartamento 1317-A", price=250_000)
    beds24.add_room(1003, 10031, "Apartaestudio 715-C", price=180_000)
    beds24.book(10011, today() + timedelta(days=12), today() + timedelta(days=14))


def calendar_calls(fakes: Fakes) -> list[Any]:
    return fakes.beds24.calls_to(f"^{CALENDAR}$")


def tool_outputs(fakes: Fakes) -> list[str]:
    return [
        item["output"]
        for call in fakes.openai.calls
        if call.path == "/v1/responses"
        for item in call.json["input"]
        if item.get("type") == "function_call_output"
    ]


async def ask(bot: Any, fakes: Fakes, text: str) -> str:
    """Send ``text`` as the customer; the parts of the answer sent in that turn, joined."""
    before = len(fakes.whapi.sent_to(CHAT))
    turns = bot.service.telemetry.turns.labels("replied")
    done = turns._value.get() + 1
    await bot.post(payloads.webhook([payloads.text_message(USER, text)]))
    await wait_until(lambda: turns._value.get() >= done, timeout=10)
    return "\n\n".join(m.body or "" for m in fakes.whapi.sent_to(CHAT)[before:])


async def test_availability_is_looked_up_and_answered(tmp_path: Path) -> None:
    async with open_fakes() as fakes:
        apartments(fakes)
        settings = make_settings(fakes, tmp_path, **beds24_on(fakes))
        async with open_bot(fakes, settings) as bot:
            answer = await ask(bot, fakes, f"¿Tienen disponibilidad del {iso(3)} al {iso(5)}?")
        assert "🏠 Apartaestudio 715-C - $360,000 total ($180,000/noche)" in answer
        assert "🏠 Apartamento 1317-A - $500,000 total ($250,000/noche)" in answer
        (call,) = calendar_calls(fakes)
        assert call.valid and call.headers["token"] == BEDS24_TOKEN
        # The nights of the stay: the check-out day is not one of them.
        assert call.query["startDate"] == iso(3) and call.query["endDate"] == iso(4)
        first = next(c for c in fakes.openai.calls if c.path == "/v1/responses")
        tool = next(t for t in first.json["tools"] if t["name"] == "check_availability")
        assert tool["strict"] is True


async def test_without_credentials_there_is_no_availability_tool(tmp_path: Path) -> None:
    async with open_fakes() as fakes:
        async with open_bot(fakes, make_settings(fakes, tmp_path)) as bot:
            answer = await ask(bot, fakes, f"¿disponibilidad del {iso(3)} al {iso(5)}?")
        assert answer.startswith("Recibido:")
        first = next(c for c in fakes.openai.calls if c.path == "/v1/responses")
        assert "check_availability" not in {t["name"] for t in first.json["tools"]}
        assert fakes.beds24.calls == []


async def test_date_rules_answer_without_asking_beds24(tmp_path: Path) -> None:
    async with open_fakes() as fakes:
        apartments(fakes)
        settings = make_settings(fakes, tmp_path, **beds24_on(fakes))
        cases = [
            ({"startDate": "10/12/2030", "endDate": iso(5)}, "Error: No se pudieron procesar"),
            ({"startDate": iso(5), "endDate": iso(5)}, "La fecha de fin debe ser posterior"),
            (
                {"startDate": iso(-3), "endDate": iso(2)},
                "llama nuevamente a la funcion con las fechas correctas",
            ),
            ({"startDate": iso(1), "endDate": iso(32)}, "limitadas a 30 noches máximo"),
            ({"startDate": iso(1), "endDate": iso(3), "propertyId": -4}, "número entero positivo"),
        ]
        async with open_bot(fakes, settings) as bot:
            for args, expected in cases:
                answer = await ask(bot, fakes, f"check_availability {json.dumps(args)}")
                assert expected in answer
        outputs = tool_outputs(fakes)
        assert len(outputs) == len(cases)
        assert outputs[2].startswith("mensaje tecnico** llama nuevamente")
        assert f"hoy es ({today().day} de " in outputs[2]
        assert calendar_calls(fakes) == []


async def test_year_hallucination_is_fixed_end_to_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        AvailabilityChecker, "now", lambda self: datetime(2026, 3, 10, 9, 0, tzinfo=BOGOTA)
    )
    async with open_fakes() as fakes:
        apartments(fakes)
        settings = make_settings(fakes, tmp_path, **beds24_on(fakes))
        async with open_bot(fakes, settings) as bot:
            answer = await ask(bot, fakes, "¿disponibilidad del 2025-06-10 al 2025-06-12?")
        assert "📅 Disponibilidad: 10/06/2026 al 12/06/2026 (2 noches)" in answer
        (call,) = calendar_calls(fakes)
        assert call.query["startDate"] == "2026-06-10"


async def test_the_property_asked_about_is_sent_to_beds24(tmp_path: Path) -> None:
    async with open_fakes() as fakes:
        apartments(fakes)
        settings = make_settings(fakes, tmp_path, **beds24_on(fakes))
        async with open_bot(fakes, settings) as bot:
            answer = await ask(
                bot, fakes, f"disponibilidad en la propiedad 1003 del {iso(3)} al {iso(5)}"
            )
        assert "Apartaestudio 715-C" in answer and "1317-A" not in answer
        assert calendar_calls(fakes)[0].query["propertyId"] == "1003"


async def test_alternatives_combine_apartments(tmp_path: Path) -> None:
    async with open_fakes() as fakes:
        apartments(fakes)
        fakes.beds24.book(10031, today() + timedelta(days=10), today() + timedelta(days=12))
        settings = make_settings(fakes, tmp_path, **beds24_on(fakes))
        async with open_bot(fakes, settings) as bot:
            answer = await ask(bot, fakes, f"¿disponibilidad del {iso(10)} al {iso(14)}?")
        assert "❌ Ningún apartamento está disponible todas las noches" in answer
        assert "🏠 Opción 1 (1 traslado) - $860,000 total" in answer


async def test_answers_are_cached_for_a_while(tmp_path: Path) -> None:
    async with open_fakes() as fakes:
        apartments(fakes)
        settings = make_settings(fakes, tmp_path, beds24_cache_seconds=1.0, **beds24_on(fakes))
        question = f"¿disponibilidad del {iso(3)} al {iso(5)}?"
        async with open_bot(fakes, settings) as bot:
            first = await ask(bot, fakes, question)
            second = await ask(bot, fakes, question)
            assert len(calendar_calls(fakes)) == 1 and first == second
            await ask(bot, fakes, f"¿disponibilidad del {iso(3)} al {iso(6)}?")
            assert len(calendar_calls(fakes)) == 2  # other dates, another call
            await trio.sleep(1.1)
            await ask(bot, fakes, question)
            assert len(calendar_calls(fakes)) == 3  # expired


async def test_a_failing_beds24_is_said_and_not_cached(tmp_path: Path) -> None:
    async with open_fakes() as fakes:
        apartments(fakes)
        fakes.beds24.faults.add(CALENDAR, status=503, times=2)
        settings = make_settings(fakes, tmp_path, **beds24_on(fakes))
        question = f"¿disponibilidad del {iso(3)} al {iso(5)}?"
        async with open_bot(fakes, settings) as bot:
            failed = await ask(bot, fakes, question)
            assert BOOKING_SYSTEM_DOWN in failed
            assert len(calendar_calls(fakes)) == 2  # BEDS24_MAX_ATTEMPTS
            fakes.beds24.faults.add(CALENDAR, status=401, times=1)
            assert BOOKING_SYSTEM_DOWN in await ask(bot, fakes, question)
            answer = await ask(bot, fakes, question)
        assert "Apartaestudio 715-C" in answer  # the failure was not kept as "no availability"


async def test_a_slow_beds24_meets_the_deadline(tmp_path: Path) -> None:
    async with open_fakes() as fakes:
        apartments(fakes)
        fakes.beds24.faults.delay(CALENDAR, 5.0, times=1)
        settings = make_settings(fakes, tmp_path, beds24_deadline_seconds=0.5, **beds24_on(fakes))
        async with open_bot(fakes, settings) as bot:
            started = trio.current_time()
            answer = await ask(bot, fakes, f"¿disponibilidad del {iso(3)} al {iso(5)}?")
            assert trio.current_time() - started < 4.0
        assert BOOKING_SYSTEM_DOWN in answer


async def test_refresh_token_is_exchanged_and_renewed_on_401(tmp_path: Path) -> None:
    async with open_fakes() as fakes:
        apartments(fakes)
        settings = make_settings(fakes, tmp_path, **beds24_on(fakes, refresh=True))
        async with open_bot(fakes, settings) as bot:
            await ask(bot, fakes, f"¿disponibilidad del {iso(3)} al {iso(5)}?")
            fakes.beds24.expire_tokens()
            answer = await ask(bot, fakes, f"¿disponibilidad del {iso(4)} al {iso(6)}?")
        assert "Apartaestudio 715-C" in answer
        exchanges = fakes.beds24.calls_to("/authentication/token")
        assert len(exchanges) == 2
        assert exchanges[0].headers["refreshtoken"] == BEDS24_REFRESH_TOKEN
        statuses = [c.status for c in calendar_calls(fakes)]
        assert statuses == [200, 401, 200]
        assert (
            calendar_calls(fakes)[0].headers["token"] != calendar_calls(fakes)[2].headers["token"]
        )


def availability_call(call_id: str, start: str, end: str) -> dict[str, Any]:
    args = {"startDate": start, "endDate": end, "propertyId": None, "roomId": None}
    return {
        "type": "function_call",
        "call_id": call_id,
        "name": "check_availability",
        "arguments": json.dumps(args),
    }


def scripted(*steps: Any) -> Any:
    queue = list(steps)

    def responder(request: ResponseRequest) -> Any:
        return queue.pop(0) if queue else "fin"

    return responder


async def test_interim_message_once_before_several_checks(tmp_path: Path) -> None:
    async with open_fakes() as fakes:
        apartments(fakes)
        settings = make_settings(fakes, tmp_path, **beds24_on(fakes))
        async with open_bot(fakes, settings) as bot:
            # One check: no interim message.
            single = await ask(bot, fakes, f"¿disponibilidad del {iso(3)} al {iso(5)}?")
            assert "Voy a consultar" not in single
            # Two checks in one round: the interim message, then the answer.
            text = f"¿disponibilidad del {iso(3)} al {iso(5)} o del {iso(8)} al {iso(9)}?"
            double = await ask(bot, fakes, text)
            interim, rest = double.split("\n\n", 1)
            assert interim == "Voy a consultar disponibilidad"
            assert "Voy a consultar" not in rest and rest.count("📅 Disponibilidad") == 2
            # Two rounds of several checks in one turn: still one interim message.
            fakes.openai.responder = scripted(
                [availability_call("a1", iso(3), iso(4)), availability_call("a2", iso(5), iso(6))],
                [availability_call("a3", iso(6), iso(7)), availability_call("a4", iso(7), iso(8))],
                "Listo, revisé las cuatro fechas.",
            )
            four = await ask(bot, fakes, "¿y esas cuatro fechas?")
        assert four == "Voy a consultar disponibilidad\n\nListo, revisé las cuatro fechas."


async def test_interim_message_can_be_switched_off(tmp_path: Path) -> None:
    async with open_fakes() as fakes:
        apartments(fakes)
        settings = make_settings(fakes, tmp_path, beds24_interim_message=None, **beds24_on(fakes))
        async with open_bot(fakes, settings) as bot:
            text = f"¿disponibilidad del {iso(3)} al {iso(5)} o del {iso(8)} al {iso(9)}?"
            answer = await ask(bot, fakes, text)
        assert "Voy a consultar" not in answer and answer.count("📅 Disponibilidad") == 2


async def test_the_booking_validator_corrects_names_and_asks_once(tmp_path: Path) -> None:
    async with open_fakes() as fakes:
        apartments(fakes)
        fakes.openai.responder = scripted(
            [availability_call("v1", iso(3), iso(5))],
            "Te ofrezco el Apto 1317-B a $230,000 la noche.",
            "El Apto 1317-B cuesta $250,000 la noche.",
            [availability_call("v2", iso(3), iso(5))],
            "El Apto 1317-B cuesta $230,000 la noche.",
        )
        settings = make_settings(fakes, tmp_path, beds24_check_answers=True, **beds24_on(fakes))
        async with open_bot(fakes, settings) as bot:
            first = await ask(bot, fakes, "¿precio?")
            # Within the cool-down: the name is still corrected, the price not asked again.
            second = await ask(bot, fakes, "¿seguro?")
        assert first == "El Apto 1317-A cuesta $250,000 la noche."
        assert second == "El Apto 1317-A cuesta $230,000 la noche."
        responses = [c for c in fakes.openai.calls if c.path == "/v1/responses"]
        assert len(responses) == 5
        (note,) = [i["content"] for i in responses[2].json["input"] if i.get("role") == "developer"]
        assert "$230,000" in note and "check_availability" in note
        assert "tools" not in responses[2].json


async def test_client_raises_on_success_false_and_bad_bodies() -> None:
    bodies = iter(
        [
            httpx.Response(200, json={"success": False, "error": "Invalid propertyId"}),
            httpx.Response(200, content=b"<html>"),
            httpx.Response(429, json={"success": False}, headers={"retry-after": "0"}),
            httpx.Response(429, json={"success": False}, headers={"retry-after": "0"}),
        ]
    )
    transport = httpx.MockTransport(lambda request: next(bodies))
    client = Beds24Client(
        base_url="http://beds24.invalid/v2",
        token="t",
        refresh_token=None,
        timeout=1.0,
        policy=RetryPolicy(attempts=2, base_seconds=0.0, max_seconds=0.0),
        transport=transport,
    )
    async with client:
        for expected in ("Invalid propertyId", "invalid JSON", "HTTP 429"):
            with pytest.raises(Beds24Error, match=expected):
                await client.calendar(today(), today())


async def test_fake_beds24_validates_and_authenticates(tmp_path: Path) -> None:
    async with open_fakes() as fakes, httpx.AsyncClient(base_url=fakes.beds24_url) as http:
        apartments(fakes)
        good = {"startDate": iso(1), "endDate": iso(14)}
        assert (await http.get("/inventory/rooms/calendar", params=good)).status_code == 401
        headers = {"token": BEDS24_TOKEN}
        for params in (
            {"startDate": iso(1)},
            {**good, "startDate": "1/2/2026"},
            {**good, "x": "1"},
        ):
            response = await http.get("/inventory/rooms/calendar", params=params, headers=headers)
            assert response.status_code == 400 and response.json()["success"] is False
        backwards = {"startDate": iso(5), "endDate": iso(1)}
        response = await http.get("/inventory/rooms/calendar", params=backwards, headers=headers)
        assert response.status_code == 400
        assert len(fakes.beds24.invalid_calls) == 4
        response = await http.get("/inventory/rooms/calendar", params=good, headers=headers)
        data = response.json()["data"]
        booked = next(r for r in data if r["roomId"] == 10011)["calendar"]
        # Equal neighbouring days are one entry: free, booked (nights 12 and 13), free.
        assert [(e["from"], e["to"], e["numAvail"]) for e in booked] == [
            (iso(1), iso(11), 1),
            (iso(12), iso(13), 0),
            (iso(14), iso(14), 1),
        ]
        wrong = await http.get("/authentication/token", headers={"refreshToken": "nope"})
        assert wrong.status_code == 401
        token = await http.get(
            "/authentication/token", headers={"refreshToken": BEDS24_REFRESH_TOKEN}
        )
        assert token.json()["expiresIn"] == 86400
        again = await http.get(
            "/inventory/rooms/calendar", params=good, headers={"token": token.json()["token"]}
        )
        assert again.status_code == 200
