"""Health, inspection and control over HTTP: readiness, admin token, /actors, pause/resume/reset.

In-process servers through real HTTP (tests.harness); the store's file operations can fail on
demand through the ``FileIO`` seam to show readiness and webhooks when the journal cannot be
written, and that nothing is lost once it recovers.
"""

from __future__ import annotations

import errno
import math
from pathlib import Path
from typing import Any

import httpx
import trio

from sandbox import payloads
from store.fileio import FileIO
from tests.harness import Bot, Fakes, make_settings, open_bot, open_fakes, wait_until
from tests.process import ADMIN_TOKEN, user_text

USER = "573001234567"
CHAT = f"{USER}@s.whatsapp.net"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def responses_calls(fakes: Fakes) -> list[Any]:
    return fakes.openai.calls_to("/v1/responses$", "POST")


async def say(bot: Bot, text: str, user: str = USER) -> None:
    response = await bot.post(payloads.webhook([payloads.text_message(user, text)]))
    assert response.status_code == 200, response.text


async def inspect(bot: Bot, user: str = USER, **params: str) -> dict[str, Any]:
    response = await bot.http.get(f"{bot.url}/actors/{user}", headers=AUTH, params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def control(bot: Bot, action: str, user: str = USER) -> dict[str, Any]:
    response = await bot.http.post(f"{bot.url}/actors/{user}/{action}", headers=AUTH)
    assert response.status_code == 200, response.text
    return response.json()


def settled(bot: Bot, user: str = USER) -> bool:
    """The user's turn is over: nothing pending in the inbox, the actor idle (or gone)."""
    cell = bot.service.supervisor.cell(user)
    idle = cell is None or (cell.behavior is not None and cell.behavior.is_idle())
    return idle and not bot.service.store.pending_for(user)


class FlakyIO(FileIO):
    """fsync fails with EIO while ``failing`` is set (a disk that stopped accepting writes)."""

    def __init__(self) -> None:
        self.failing = False

    def fsync(self, fd: int) -> None:
        if self.failing:
            raise OSError(errno.EIO, "injected EIO")
        super().fsync(fd)


async def test_admin_endpoints_need_the_token_and_are_off_without_one(tmp_path: Path) -> None:
    async with open_fakes() as fakes:
        settings = make_settings(fakes, tmp_path / "a", admin_token=ADMIN_TOKEN)
        async with open_bot(fakes, settings) as bot:
            url = f"{bot.url}/actors"
            assert (await bot.http.get(url)).status_code == 401
            wrong = {"Authorization": "Bearer not-the-token"}
            assert (await bot.http.get(url, headers=wrong)).status_code == 401
            basic = {"Authorization": f"Basic {ADMIN_TOKEN}"}
            assert (await bot.http.get(url, headers=basic)).status_code == 401
            post = await bot.http.post(f"{url}/{USER}/pause", headers=wrong)
            assert post.status_code == 401
            right = await bot.http.get(url, headers=AUTH)
            assert right.status_code == 200
            assert right.json() == {
                "live": 0,
                "phases": {},
                "matching": 0,
                "offset": 0,
                "limit": 50,
                "next_offset": None,
                "actors": [],
            }
        async with open_bot(fakes, make_settings(fakes, tmp_path / "b")) as bot:
            for method, path in (("GET", "/actors"), ("GET", f"/actors/{USER}")):
                response = await bot.http.request(method, f"{bot.url}{path}", headers=AUTH)
                assert response.status_code == 404
            response = await bot.http.post(f"{bot.url}/actors/{USER}/pause", headers=AUTH)
            assert response.status_code == 404


async def test_inspection_mid_buffer_mid_turn_and_passivated(tmp_path: Path) -> None:
    async with open_fakes() as fakes:
        settings = make_settings(
            fakes,
            tmp_path,
            admin_token=ADMIN_TOKEN,
            buffer_seconds=2.0,
            max_wait_seconds=5.0,
            idle_seconds=0.4,
        )
        async with open_bot(fakes, settings) as bot:
            fakes.openai.faults.delay("/v1/responses$", 1.0, times=1)
            await say(bot, "hola")
            await say(bot, "mi pedido 123")
            await trio.sleep(0.2)
            info = await inspect(bot)
            assert info["live"] is True and info["phase"] == "buffering"
            assert info["buffer"]["messages"] == 2
            assert 0.1 < info["buffer"]["age_seconds"] < 2.0
            assert 0 < info["buffer"]["due_in_seconds"] <= 2.0
            assert "texts" not in info["buffer"] and "pedido" not in str(info)
            with_text = await inspect(bot, text="1")
            assert with_text["buffer"]["texts"] == ["hola", "mi pedido 123"]
            overview = (await bot.http.get(f"{bot.url}/actors", headers=AUTH)).json()
            assert overview["live"] == 1 and overview["phases"] == {"buffering": 1}
            assert overview["actors"][0]["user"] == USER

            await wait_until(lambda: len(responses_calls(fakes)) == 1, timeout=5)
            await trio.sleep(0.2)
            info = await inspect(bot)
            assert info["phase"] in {"thinking", "replying"}
            assert info["turn"]["elapsed_seconds"] > 0.1
            assert info["turn"]["messages"] == 2
            assert info["conversation_id"].startswith("conv_")

            await fakes.whapi.wait_sent(1, to=CHAT, timeout=5)
            await wait_until(lambda: USER not in bot.service.supervisor, timeout=5)
            info = await inspect(bot, text="1")
            assert info["live"] is False and info["phase"] == "passivated"
            assert (
                info["record"]["conversation_id"] == responses_calls(fakes)[0].json["conversation"]
            )
            assert "pedido" not in str(info)
            missing = await bot.http.get(f"{bot.url}/actors/573000000000", headers=AUTH)
            assert missing.status_code == 404


async def test_pause_resume_and_reset_through_the_api(tmp_path: Path) -> None:
    async with open_fakes() as fakes:
        settings = make_settings(fakes, tmp_path, admin_token=ADMIN_TOKEN)
        async with open_bot(fakes, settings) as bot:
            await say(bot, "hola")
            await fakes.whapi.wait_sent(1, to=CHAT)
            first_conversation = responses_calls(fakes)[-1].json["conversation"]

            paused = await control(bot, "pause")
            assert paused["ok"] is True and paused["paused_until"]
            assert paused["paused_by"] == "operator"
            assert (await inspect(bot))["phase"] == "paused"
            await say(bot, "¿hay alguien?")
            await trio.sleep(0.6)
            assert len(fakes.whapi.sent_to(CHAT)) == 1, "a paused user got an answer"
            assert len(responses_calls(fakes)) == 1

            resumed = await control(bot, "resume")
            assert resumed["ok"] is True and resumed["paused_until"] is None
            await say(bot, "sigo aquí")
            await fakes.whapi.wait_sent(2, to=CHAT)
            assert responses_calls(fakes)[-1].json["conversation"] == first_conversation

            reset = await control(bot, "reset")
            assert reset["ok"] is True
            await say(bot, "empecemos de nuevo")
            await fakes.whapi.wait_sent(3, to=CHAT)
            second_conversation = responses_calls(fakes)[-1].json["conversation"]
            assert second_conversation.startswith("conv_")
            assert second_conversation != first_conversation

            unknown = await bot.http.post(f"{bot.url}/actors/{USER}/explode", headers=AUTH)
            assert unknown.status_code == 404
            bad_user = await bot.http.post(f"{bot.url}/actors/..%2Fetc/pause", headers=AUTH)
            assert bad_user.status_code in {400, 404}


async def test_readiness_and_health_then_draining(tmp_path: Path) -> None:
    async with open_fakes() as fakes, open_bot(fakes, make_settings(fakes, tmp_path)) as bot:
        ready = await bot.http.get(f"{bot.url}/readyz")
        assert ready.status_code == 200
        assert ready.json() == {
            "ready": True,
            "draining": False,
            "store_healthy": True,
            "supervisor_running": True,
        }
        assert (await bot.http.get(f"{bot.url}/healthz")).json() == {"status": "alive"}
        health = (await bot.http.get(f"{bot.url}/health")).json()
        assert health["status"] == "healthy" and health["initialized"] is True
        assert {"activeBuffers", "threadStats", "environment", "port"} <= set(health)
        assert health["port"] == httpx.URL(bot.url).port  # the bound port, not PORT's 0
        bot.service.begin_drain()
        draining = await bot.http.get(f"{bot.url}/readyz")
        assert draining.status_code == 503 and draining.json()["draining"] is True
        hook = await bot.post(payloads.webhook([payloads.text_message(USER, "hola")]))
        assert hook.status_code == 503
        assert (await bot.http.get(f"{bot.url}/health")).json()["status"] == "draining"


async def test_journal_write_failure_answers_503_and_loses_nothing(tmp_path: Path) -> None:
    io = FlakyIO()
    async with open_fakes() as fakes:
        settings = make_settings(fakes, tmp_path, store_recovery_seconds=0.1)
        async with open_bot(fakes, settings, file_io=io) as bot:
            await say(bot, "hola")
            await fakes.whapi.wait_sent(1, to=CHAT)
            await wait_until(lambda: settled(bot), timeout=5)
            conversation = bot.service.store.get(USER).conversation_id

            io.failing = True
            body = payloads.webhook([payloads.text_message(USER, "¿siguen ahí?")])
            refused = await bot.post(body)
            assert refused.status_code == 503
            ready = await bot.http.get(f"{bot.url}/readyz")
            assert ready.status_code == 503 and ready.json()["store_healthy"] is False
            assert bot.service.store.inbox_status(body["messages"][0]["id"]).value == "new"

            io.failing = False
            await wait_until(lambda: bot.service.store.healthy, timeout=5)
            assert (await bot.http.get(f"{bot.url}/readyz")).status_code == 200
            assert (await bot.post(body)).status_code == 200  # Whapi's retry
            await fakes.whapi.wait_sent(2, to=CHAT)
            assert user_text(responses_calls(fakes)[-1]) == "¿siguen ahí?"
            assert bot.service.store.get(USER).conversation_id == conversation
            counts = bot.service.gateway.counters.webhooks
            assert counts.get("store_unavailable") == 1


async def test_store_failure_after_the_reply_sends_no_fallback(tmp_path: Path) -> None:
    io = FlakyIO()
    async with open_fakes() as fakes:
        settings = make_settings(fakes, tmp_path, store_recovery_seconds=0.1)
        async with open_bot(fakes, settings, file_io=io) as bot:
            fakes.whapi.faults.delay("/messages/text", 0.5, times=1)
            await say(bot, "hola")
            await wait_until(lambda: bool(fakes.whapi.calls_to("/messages/text")), timeout=5)
            io.failing = True  # the reply is on its way; saving the turn will fail
            await fakes.whapi.wait_sent(1, to=CHAT)
            await trio.sleep(0.5)
            io.failing = False
            await trio.sleep(0.5)
            bodies = [m.body for m in fakes.whapi.sent_to(CHAT)]
            assert settings.fallback_text not in bodies, bodies


async def test_control_input_is_validated_and_unknown_customers_are_not_created(
    tmp_path: Path,
) -> None:
    async with open_fakes() as fakes:
        settings = make_settings(fakes, tmp_path, admin_token=ADMIN_TOKEN)
        async with open_bot(fakes, settings) as bot:
            await say(bot, "hola")
            await fakes.whapi.wait_sent(1, to=CHAT)
            url = f"{bot.url}/actors/{USER}/pause"
            for bad in ("abc", "-5", "0", "nan", "inf", str(31 * 86400)):
                response = await bot.http.post(url, headers=AUTH, params={"seconds": bad})
                assert response.status_code == 400, bad
                assert "seconds must be" in response.json()["error"]
            resume_with_seconds = await bot.http.post(
                f"{bot.url}/actors/{USER}/resume", headers=AUTH, params={"seconds": "60"}
            )
            assert resume_with_seconds.status_code == 400
            assert (await inspect(bot))["phase"] != "paused", "a refused request changed nothing"

            stranger = "573001112223"
            refused = await bot.http.post(f"{bot.url}/actors/{stranger}/pause", headers=AUTH)
            assert refused.status_code == 404 and "create=1" in refused.json()["error"]
            assert bot.service.store.get(stranger) is None, "no record for an unknown number"
            for action in ("resume", "reset"):
                response = await bot.http.post(
                    f"{bot.url}/actors/{stranger}/{action}", headers=AUTH
                )
                assert response.status_code == 404
            created = await bot.http.post(
                f"{bot.url}/actors/{stranger}/pause",
                headers=AUTH,
                params={"create": "1", "seconds": "120"},
            )
            assert created.status_code == 200, created.text
            body = created.json()
            assert set(body) >= {"ok", "user", "action", "paused_until", "paused_by"}
            assert body["paused_by"] == "operator"
            assert bot.service.store.get(stranger) is not None


async def test_inspection_says_why_and_the_overview_filters_and_pages(tmp_path: Path) -> None:
    async with open_fakes() as fakes:
        settings = make_settings(fakes, tmp_path, admin_token=ADMIN_TOKEN)
        async with open_bot(fakes, settings) as bot:
            users = [f"5730077{n:05d}" for n in range(5)]
            for user in users:
                await say(bot, "hola", user=user)
            for user in users:
                await fakes.whapi.wait_sent(1, to=f"{user}@s.whatsapp.net")
            info = await inspect(bot, users[0])
            assert info["last_turn"]["outcome"] == "replied"
            assert info["last_turn"]["parts_sent"] == 1 and info["last_turn"]["error"] is None
            assert info["last_turn"]["model_seconds"] >= 0
            assert info["last_reply"]["parts"] == 1 and info["last_reply"]["at"]
            assert info["pause"] is None

            await control(bot, "pause", users[1])
            paused = await inspect(bot, users[1])
            assert paused["pause"]["by"] == "operator" and paused["pause"]["until"]

            fakes.openai.faults.add("/v1/responses$", status=500, times=math.inf)
            await say(bot, "¿sigues?", user=users[2])
            await fakes.whapi.wait_sent(2, to=f"{users[2]}@s.whatsapp.net", timeout=20)
            fakes.openai.faults.clear()
            failing = await inspect(bot, users[2])
            assert failing["last_turn"]["outcome"] == "fallback"
            assert "500" in failing["last_turn"]["error"]

            async def overview(**params: str) -> dict[str, Any]:
                response = await bot.http.get(f"{bot.url}/actors", headers=AUTH, params=params)
                assert response.status_code == 200, response.text
                return response.json()

            everyone = await overview()
            assert everyone["matching"] == 5 and len(everyone["actors"]) == 5
            only_paused = await overview(paused="1")
            assert [a["user"] for a in only_paused["actors"]] == [users[1]]
            only_failing = await overview(failing="1")
            assert [a["user"] for a in only_failing["actors"]] == [users[2]]
            first = await overview(limit="2")
            second = await overview(limit="2", offset=str(first["next_offset"]))
            third = await overview(limit="2", offset=str(second["next_offset"]))
            seen = [a["user"] for page in (first, second, third) for a in page["actors"]]
            assert sorted(seen) == sorted(users) and third["next_offset"] is None
            idle = await overview(phase="idle")
            assert all(a["phase"] == "idle" for a in idle["actors"])
            for bad in ({"limit": "0"}, {"offset": "-1"}, {"paused": "maybe"}, {"sort": "x"}):
                response = await bot.http.get(f"{bot.url}/actors", headers=AUTH, params=bad)
                assert response.status_code == 400, bad
