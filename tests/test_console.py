"""The operator console over plain HTTP (no browser): who gets in, CSRF, 404 when off, pages.

In-process bots on loopback with the sandbox fakes (tests.harness). The browser tests of the
same pages are ``tests/test_console_browser.py``; these pin the rules a browser would hide:
the cookies' attributes, the refusals' statuses, that a refused request changes nothing, that
the token is never logged, and the overview's figures and history.
"""

from __future__ import annotations

import ast
import inspect
import json
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

import gateway.console
from gateway.console import ConsoleSessions, phase_group, read_quarantine
from gateway.console_history import ActivityHistory
from gateway.console_i18n import TEXTS, age
from sandbox import payloads
from tests.harness import Bot, Fakes, make_settings, open_bot, open_fakes, wait_until
from tests.process import ADMIN_TOKEN

USER = "573005550101"
CHAT = f"{USER}@s.whatsapp.net"
CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    match = CSRF_FIELD.search(html)
    assert match, "no CSRF field on the page"
    return match.group(1)


class Console:
    """An operator's browser without the browser: a cookie jar and the console's forms."""

    def __init__(self, bot: Bot, http: httpx.AsyncClient) -> None:
        self.bot = bot
        self.http = http
        self.csrf: str | None = None

    async def login(self, token: str = ADMIN_TOKEN) -> httpx.Response:
        form = await self.http.get("/console/login")
        assert form.status_code == 200, form.text
        response = await self.http.post(
            "/console/login", data={"csrf": csrf_of(form.text), "token": token}
        )
        if response.status_code == 303:
            overview = await self.http.get("/console/")
            assert overview.status_code == 200
            self.csrf = csrf_of(overview.text)
        return response

    async def control(self, action: str, user: str = USER, **form: str) -> httpx.Response:
        assert self.csrf
        return await self.http.post(
            f"/console/customers/{user}/{action}", data={"csrf": self.csrf, **form}
        )


@asynccontextmanager
async def console_for(bot: Bot) -> AsyncIterator[Console]:
    async with httpx.AsyncClient(base_url=bot.url, timeout=10, follow_redirects=False) as http:
        yield Console(bot, http)


async def say(bot: Bot, text: str, user: str = USER) -> None:
    response = await bot.post(payloads.webhook([payloads.text_message(user, text)]))
    assert response.status_code == 200, response.text


def settled(bot: Bot, user: str = USER) -> bool:
    cell = bot.service.supervisor.cell(user)
    idle = cell is None or (cell.behavior is not None and cell.behavior.is_idle())
    return idle and not bot.service.store.pending_for(user)


@asynccontextmanager
async def started(tmp_path: Path, **overrides: Any) -> AsyncIterator[tuple[Fakes, Bot]]:
    async with open_fakes() as fakes:
        values = {"admin_token": ADMIN_TOKEN, **overrides}
        settings = make_settings(fakes, tmp_path / "data", **values)
        async with open_bot(fakes, settings) as bot:
            yield fakes, bot


async def test_the_console_is_off_without_the_admin_token(tmp_path: Path) -> None:
    async with started(tmp_path, admin_token=None) as (_fakes, bot), console_for(bot) as console:
        for method, path in (
            ("GET", "/console"),
            ("GET", "/console/"),
            ("GET", "/console/login"),
            ("POST", "/console/login"),
            ("GET", "/console/api/overview"),
            ("GET", f"/console/customers/{USER}"),
            ("POST", f"/console/customers/{USER}/pause"),
            ("GET", "/console/data"),
            ("GET", "/console/static/console.js"),
        ):
            response = await console.http.request(method, path, data={"token": "x"})
            assert response.status_code == 404, (method, path)
            assert "set-cookie" not in response.headers


async def test_login_sets_a_strict_expiring_http_only_cookie_and_logout_ends_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with started(tmp_path) as (_fakes, bot), console_for(bot) as console:
        for path in ("/console", "/console/", f"/console/customers/{USER}", "/console/data"):
            response = await console.http.get(path)
            assert response.status_code == 303, path
            assert response.headers["location"].endswith("/console/login") or path == "/console"
        assert (await console.http.get("/console/api/overview")).status_code == 401

        wrong = await console.login("not-the-token")
        assert wrong.status_code == 401 and "set-cookie" in wrong.headers
        assert "wabot_console=" not in wrong.headers["set-cookie"]
        assert bot.service.http_rejections.get("admin_unauthorized") == 1

        form = await console.http.get("/console/login")
        forged = await console.http.post(
            "/console/login", data={"csrf": "forged", "token": ADMIN_TOKEN}
        )
        assert forged.status_code == 403 and "wabot_console=" not in str(forged.headers)
        assert csrf_of(form.text)

        right = await console.login()
        assert right.status_code == 303 and right.headers["location"] == "/console/"
        cookie = next(
            c for c in right.headers.get_list("set-cookie") if c.startswith("wabot_console=")
        )
        attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
        assert {"httponly", "max-age", "expires", "path"} <= attributes
        assert "samesite=strict" in cookie.lower() and "path=/console" in cookie.lower()
        assert "max-age=28800" in cookie.lower()
        assert "secure" not in attributes, "development serves plain HTTP on loopback"
        assert ADMIN_TOKEN not in cookie

        overview = await console.http.get("/console/")
        assert overview.status_code == 200
        assert overview.headers["cache-control"] == "no-store"
        assert "script-src 'self'" in overview.headers["content-security-policy"]
        assert "<script>" not in overview.text, "no inline script under the CSP"
        assert (await console.http.get("/console/api/overview")).status_code == 200

        no_csrf = await console.http.post("/console/logout")
        assert no_csrf.status_code == 403
        assert (await console.http.get("/console/api/overview")).status_code == 200
        bye = await console.http.post("/console/logout", data={"csrf": console.csrf})
        assert bye.status_code == 303 and "bye=1" in bye.headers["location"]
        assert (await console.http.get("/console/api/overview")).status_code == 401
        assert (await console.http.get("/console/")).status_code == 303
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "console login token does not match WABOT_ADMIN_TOKEN" in logged
    assert "console: operator logged in" in logged
    assert ADMIN_TOKEN not in logged and "not-the-token" not in logged


async def test_production_cookies_are_secure(tmp_path: Path) -> None:
    async with started(tmp_path, env="production") as (_fakes, bot), console_for(bot) as console:
        form = await console.http.get("/console/login")
        assert "; secure" in form.headers["set-cookie"].lower()
        response = await console.http.post(
            "/console/login",
            data={"csrf": csrf_of(form.text), "token": ADMIN_TOKEN},
            # A Secure cookie is not sent over plain HTTP: send it as a browser on HTTPS would.
            headers={"Cookie": f"wabot_console_login={form.cookies['wabot_console_login']}"},
        )
        assert response.status_code == 303
        cookie = next(
            c for c in response.headers.get_list("set-cookie") if c.startswith("wabot_console=")
        )
        assert "; secure" in cookie.lower()


async def test_state_changes_need_the_session_and_its_csrf_token(tmp_path: Path) -> None:
    async with started(tmp_path) as (fakes, bot), console_for(bot) as console:
        await say(bot, "hola")
        await fakes.whapi.wait_sent(1, to=CHAT)
        await wait_until(lambda: settled(bot))
        url = f"/console/customers/{USER}/pause"

        anonymous = await console.http.post(url, data={"csrf": "x"})
        assert anonymous.status_code == 303 and anonymous.headers["location"] == "/console/login"
        await console.login()
        for form, headers in (
            ({}, {}),
            ({"csrf": ""}, {}),
            ({"csrf": "not-the-token"}, {}),
            ({"csrf": ADMIN_TOKEN}, {}),
            ({}, {"X-CSRF-Token": "wrong"}),
        ):
            refused = await console.http.post(url, data=form, headers=headers)
            assert refused.status_code == 403, form
        other = Console(bot, console.http)
        other_session = httpx.AsyncClient(base_url=bot.url, follow_redirects=False)
        async with other_session:
            other.http = other_session
            await other.login()
            assert other.csrf != console.csrf
            crossed = await console.http.post(url, data={"csrf": other.csrf})
            assert crossed.status_code == 403, "one session's token is no other's"
        assert bot.service.store.get(USER).paused_until is None, "a refused request paused"

        by_header = await console.http.post(
            url, data={"minutes": "5"}, headers={"X-CSRF-Token": console.csrf or ""}
        )
        assert by_header.status_code == 303
        assert by_header.headers["location"] == f"/console/customers/{USER}?done=pause"
        record = bot.service.store.get(USER)
        assert record.paused_by == "operator" and record.paused_until is not None
        page = await console.http.get(by_header.headers["location"])
        assert "El bot quedó en pausa para este cliente." in page.text

        assert (await console.control("pause", minutes="-3")).status_code == 400
        assert (await console.control("pause", minutes="nan")).status_code == 400
        assert (await console.control("explode")).status_code == 404
        assert (await console.control("pause", user="12ab")).status_code == 404
        stranger = await console.control("resume", user="573009999999")
        assert stranger.status_code == 404 and "nunca escribió" in stranger.text
        resumed = await console.control("resume")
        assert resumed.status_code == 303
        assert bot.service.store.get(USER).paused_until is None
        first = bot.service.store.get(USER).conversation_id
        assert (await console.control("reset")).status_code == 303
        assert bot.service.store.get(USER).conversation_id is None
        assert first is not None


async def test_overview_counts_turns_per_minute_and_shows_the_customer(tmp_path: Path) -> None:
    # The overview shows the memory limits: give the bot some (far above a test runner's RSS).
    limits = {"memory_soft_mb": 8192.0, "memory_hard_mb": 16384.0}
    async with started(tmp_path, **limits) as (fakes, bot), console_for(bot) as console:
        await console.login()
        before = (await console.http.get("/console/api/overview")).json()
        assert before["last_hour"]["turns"] == 0 and before["live"] == 0
        assert len(before["chart"]) == 60
        fakes.openai.faults.delay("/v1/responses$", 1.5, times=1)
        await say(bot, "hola")
        with trio.fail_after(5):
            while True:
                during = (await console.http.get("/console/api/overview")).json()
                if during["groups"]["turn"]:
                    break
                await trio.sleep(0.05)
        assert [row["user"] for row in during["active"]] == [USER]
        assert during["active"][0]["phase"] == "thinking"
        await fakes.whapi.wait_sent(1, to=CHAT)
        await wait_until(lambda: settled(bot))
        after = (await console.http.get("/console/api/overview")).json()
        assert after["last_hour"]["turns"] == 1 and after["last_hour"]["errors"] == 0
        assert after["chart"][-1]["turns"] == 1 or after["chart"][-2]["turns"] == 1
        assert after["recent_turns"][0]["user"] == USER
        assert after["recent_turns"][0]["outcome"] == "replied"
        assert after["upstream"] == {"whapi": "ok", "openai": "ok"}
        assert after["store"]["healthy"] is True and after["store"]["records"] == 1
        assert after["memory"]["soft_bytes"] > 0 and after["memory"]["rss_bytes"] > 0
        assert after["inbox_pending"] == 0

        found = await console.http.get("/console/customers", params={"q": USER[-6:]})
        assert f'data-user="{USER}"' in found.text
        by_name = await console.http.get("/console/customers", params={"q": "nobody-called-so"})
        assert f'data-user="{USER}"' not in by_name.text
        page = await console.http.get(f"/console/customers/{USER}")
        assert page.status_code == 200
        record = bot.service.store.get(USER)
        assert record.conversation_id in page.text
        assert 'id="whatsapp"' in page.text and "Bot ·" in page.text
        state = (await console.http.get(f"/console/api/customers/{USER}")).json()
        assert state["live"] is True and state["last_turn"]["outcome"] == "replied"


class ListingModel:
    """The model client with a public ``list_items`` (the console uses it when it exists)."""

    def __init__(self, model: Any, items: list[dict[str, Any]]) -> None:
        self._model = model
        self.items = items
        self.asked: list[tuple[str, int]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    async def list_items(self, conversation_id: str, *, limit: int) -> list[dict[str, Any]]:
        self.asked.append((conversation_id, limit))
        return self.items


async def test_a_customer_page_shows_whatsapp_pending_and_openai_items(tmp_path: Path) -> None:
    async with started(tmp_path) as (fakes, bot), console_for(bot) as console:
        await console.login()
        await say(bot, "hola")
        await fakes.whapi.wait_sent(1, to=CHAT)
        await wait_until(lambda: settled(bot))
        unsupported = (await console.http.get(f"/console/customers/{USER}")).text
        if not callable(getattr(bot.service.deps.model, "list_items", None)):
            assert 'id="openai-unsupported"' in unsupported
        fakes.openai.faults.delay("/v1/responses$", 3.0, times=1)
        await say(bot, "quiero reservar <b>dos</b> noches")
        fakes.whapi.add_history(CHAT, {"id": "m1", "from_me": False, "type": "text",
                                       "timestamp": 1_700_000_000,
                                       "text": {"body": "hola, soy Ana"}})  # fmt: skip
        fakes.whapi.add_history(CHAT, {"id": "m2", "from_me": True, "source": "mobile",
                                       "type": "text", "timestamp": 1_700_000_060,
                                       "text": {"body": "Te ayudo yo, Ana"}})  # fmt: skip
        deps = bot.service.deps
        real = deps.model
        conversation_id = bot.service.store.get(USER).conversation_id
        assert conversation_id
        listing = ListingModel(
            real,
            [
                {"type": "message", "role": "user", "content": [{"type": "input_text",
                                                                   "text": "hola modelo"}]},
                {"type": "message", "role": "assistant",
                 "content": [{"type": "output_text", "text": "¡Hola! ¿En qué te ayudo?"}]},
                {"type": "function_call", "name": "escalate_to_human", "arguments": "{}"},
            ],
        )  # fmt: skip
        deps.model = listing
        try:
            page = (await console.http.get(f"/console/customers/{USER}")).text
        finally:
            deps.model = real
        assert listing.asked == [(conversation_id, 20)]
        assert "hola, soy Ana" in page and "Agente ·" in page and "Te ayudo yo, Ana" in page
        assert "Bot ·" in page
        pending = page[page.index('id="pending"') :]
        assert "quiero reservar &lt;b&gt;dos&lt;/b&gt; noches" in pending, "escaped, as text"
        assert "¡Hola! ¿En qué te ayudo?" in page and "escalate_to_human({})" in page
        state = (await console.http.get(f"/console/api/customers/{USER}")).json()
        assert state["live"] is True and state["phase"] in {"buffering", "thinking"}
        assert "texts" not in state["buffer"], "the JSON poll carries no message text"
        assert "reservar" not in json.dumps(state)


async def test_data_page_lists_backups_verifies_them_and_shows_the_quarantine(
    tmp_path: Path,
) -> None:
    async with (
        started(tmp_path, console_language="en") as (fakes, bot),
        console_for(bot) as console,
    ):
        await say(bot, "hola")
        await fakes.whapi.wait_sent(1, to=CHAT)
        await wait_until(lambda: settled(bot))
        store = bot.service.store
        backup = await store.backup("manual")
        files = store.data_files
        quarantine = files.quarantine
        quarantine.write_text(
            json.dumps({"at": 1_700_000_000, "source": "snapshot", "key": "57300",
                        "reason": "createdAt: not an ISO-8601 time", "raw": {"x": 1}}) + "\n"
            + "not json\n",
            encoding="utf-8",
        )  # fmt: skip
        await console.login()
        page = await console.http.get("/console/data")
        assert page.status_code == 200
        assert "Quarantine" in page.text and "createdAt: not an ISO-8601 time" in page.text
        assert re.findall(r'data-backup="([^"]+)"', page.text) == [backup.name]
        verified = await console.http.post(
            "/console/data/verify", data={"csrf": console.csrf, "backup": backup.name}
        )
        assert verified.status_code == 200
        assert f"{backup.name}: 1 valid records, 0 invalid." in verified.text
        backup.write_bytes(b"{not json")
        broken = await console.http.post(
            "/console/data/verify", data={"csrf": console.csrf, "backup": backup.name}
        )
        assert broken.status_code == 200 and "cannot be used" in broken.text
        unknown = await console.http.post(
            "/console/data/verify", data={"csrf": console.csrf, "backup": "../threads-data.json"}
        )
        assert unknown.status_code == 404 and "No such backup." in unknown.text
        refused = await console.http.post("/console/data/verify", data={"backup": "x"})
        assert refused.status_code == 403


def test_sessions_expire_and_are_bounded() -> None:
    now = [0.0]
    sessions = ConsoleSessions(60.0, limit=3, clock=lambda: now[0])
    first, session = sessions.open()
    assert sessions.get(first) is session and sessions.get("forged") is None
    assert sessions.get(None) is None and sessions.get("") is None
    now[0] = 59.9
    assert sessions.get(first) is session
    now[0] = 60.0
    assert sessions.get(first) is None, "expired"
    ids = [sessions.open()[0] for _ in range(4)]
    assert sessions.get(ids[0]) is None, "the oldest is closed past the limit"
    assert all(sessions.get(i) is not None for i in ids[1:]) and len(sessions) == 3
    sessions.close(ids[1])
    assert sessions.get(ids[1]) is None


def test_history_keeps_sixty_minutes_of_growth() -> None:
    clock = [1_000_000 * 60.0]
    totals = {"turns": 5.0, "errors": 1.0, "fallbacks": 0.0, "sent": 5.0, "send_errors": 0.0}
    history = ActivityHistory(lambda: dict(totals), clock=lambda: clock[0])
    history.sample()
    assert history.totals()["turns"] == 0, "what happened before the console is no minute's"
    totals["turns"] += 2
    totals["sent"] += 2
    history.sample()
    assert history.series()[-1]["turns"] == 2
    assert history.upstream_health() == {"whapi": "ok", "openai": "ok"}
    clock[0] += 120
    totals["turns"] += 1
    totals["errors"] += 1
    totals["send_errors"] += 1
    history.sample()
    series = history.series()
    assert len(series) == 60
    assert [m["turns"] for m in series[-3:]] == [2, 0, 1]
    assert history.upstream_health() == {"whapi": "degraded", "openai": "degraded"}
    for _ in range(70):
        clock[0] += 60
        totals["turns"] += 1
        history.sample()
    assert history.totals()["turns"] == 60 and len(history._minutes) == 60
    clock[0] += 3600
    assert history.totals()["turns"] == 0
    assert history.upstream_health() == {"whapi": "idle", "openai": "idle"}


def test_both_languages_have_every_text() -> None:
    assert set(TEXTS["es"]) == set(TEXTS["en"])
    for table in TEXTS.values():
        for key, text in table.items():
            assert text.strip(), key
            assert set(re.findall(r"{(\w+)}", text)) == set(
                re.findall(r"{(\w+)}", TEXTS["es"][key])
            ), key
    assert age(42, TEXTS["en"]) == "42 s" and age(600, TEXTS["es"]) == "10 min"
    assert age(None, TEXTS["en"]) == "—"
    templates = Path(gateway.console.__file__).parent / "templates" / "console"
    for template in templates.glob("*.html"):
        for key in re.findall(r't\["([\w.]+)"\]', template.read_text(encoding="utf-8")):
            assert key in TEXTS["es"], (template.name, key)


def test_phase_groups() -> None:
    assert [phase_group(p) for p in ("buffering", "thinking", "replying", "paused", "idle")] == [
        "buffering",
        "turn",
        "turn",
        "paused",
        "idle",
    ]
    assert phase_group("waiting_for_budget") == "turn" and phase_group("parked") == "other"


def test_quarantine_is_read_from_its_end(tmp_path: Path) -> None:
    path = tmp_path / "quarantine.jsonl"
    assert read_quarantine(path) == []
    with path.open("w", encoding="utf-8") as f:
        for n in range(5000):
            line = {"at": n, "source": "journal", "key": str(n), "reason": "bad", "raw": "x" * 80}
            f.write(json.dumps(line) + "\n")
    entries = read_quarantine(path, count=3)
    assert [e["key"] for e in entries] == ["4999", "4998", "4997"]


def test_console_secrets_are_compared_in_constant_time() -> None:
    source = inspect.getsource(gateway.console)
    assert "hmac.compare_digest" in inspect.getsource(gateway.console.same_secret)
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare) and any(
            isinstance(o, ast.Eq | ast.NotEq) for o in node.ops
        ):
            text = ast.unparse(node)
            assert not any(w in text for w in ("csrf", "token", "secret", "cookie")), text
