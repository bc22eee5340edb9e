"""The operator console in a real browser: Debian's chromium, headless, driven by playwright.

The bot runs in-process on loopback with the sandbox fakes (tests.harness); the browser runs
in one worker thread of its own for the whole module (playwright's sync API belongs to the
thread that started it), and each step of a test is handed to that thread while trio keeps
serving the bot. The tests log in, watch a customer's turn appear live on the overview while
the fakes run a conversation, open the customer on a 360-pixel-wide screen, pause (the next
message gets no reply), resume, reset (a new conversation), log out, and check that requests
without the session or without the CSRF token are refused and change nothing. Every wait is
on a condition (a selector, a URL, a send), never a fixed sleep.

The browser is ``/usr/bin/chromium`` (Debian's package; ``make test`` installs it when it
can), never one that playwright downloads. Without it, or without playwright, these tests
skip loudly, and under ``CI=true`` they fail. Each test saves a screenshot of its last page
as ``<tmp_path>/screenshots/<test>.png`` (pytest keeps the latest runs' tmp folders).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trio

from sandbox import payloads
from tests.harness import Bot, Fakes, make_settings, open_bot, open_fakes, wait_until
from tests.process import ADMIN_TOKEN

T = TypeVar("T")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Longest wait of one browser step (the overview polls every 2 s).
STEP_MS = 10_000
USER = "573004440202"
CHAT = f"{USER}@s.whatsapp.net"


def require_browser() -> None:
    """Skip (loudly) without chromium or playwright; under ``CI=true``, fail instead."""
    problems = []
    if not (os.access(CHROMIUM, os.X_OK) or shutil.which("chromium")):
        problems.append(
            "chromium is not installed (Debian package 'chromium'; make test installs it)"
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problems.append("playwright is not installed (the dev extras: make .venv/.installed-dev)")
    if problems:
        message = "; ".join(problems) + ": the console's browser tests cannot run"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}: required in CI")
        pytest.skip(message)


class BrowserThread:
    """playwright and one chromium, owned by a single worker thread for a whole module."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chromium")
        self._playwright: Any = None
        self.context: Any = None

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` in the browser's thread and wait for it (outside trio only)."""
        return self._pool.submit(fn, *args).result()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` in the browser's thread while trio goes on serving the bot."""
        future = self._pool.submit(fn, *args)
        return await trio.to_thread.run_sync(future.result)

    def start(self, profile: Path) -> None:
        from playwright.sync_api import sync_playwright

        self._playwright = sync_playwright().start()
        self.context = self._playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=shutil.which("chromium") or CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
        )
        self.context.set_default_timeout(STEP_MS)

    def stop(self) -> None:
        try:
            if self.context is not None:
                self.context.close()
        finally:
            if self._playwright is not None:
                self._playwright.stop()

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserThread]:
    require_browser()
    thread = BrowserThread()
    try:
        thread.call(thread.start, tmp_path_factory.mktemp("chromium-profile"))
        yield thread
        thread.call(thread.stop)
    finally:
        thread.shutdown()


class Tab:
    """One page of the browser, fresh cookies; dialogs (the confirmations) are accepted
    unless ``accept_dialogs`` is False. Script errors and console errors (a CSP violation is
    one) are collected in ``errors``."""

    def __init__(self, browser: BrowserThread) -> None:
        self.browser = browser
        self.accept_dialogs = True
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        browser.context.clear_cookies()
        self.page = browser.context.new_page()
        self.page.on("dialog", self._dialog)
        self.page.on("pageerror", lambda error: self.errors.append(f"script: {error}"))
        self.page.on("console", self._console)

    def _console(self, message: Any) -> None:
        # A refused request's status (401, 403) is the browser's console error, not ours.
        if message.type == "error" and "status of 40" not in message.text:
            self.errors.append(f"console: {message.text}")

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        if self.accept_dialogs:
            dialog.accept()
        else:
            dialog.dismiss()


@pytest.fixture
def tab(browser: BrowserThread, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Tab]:
    opened = browser.call(Tab, browser)
    try:
        yield opened
    finally:
        shots = tmp_path / "screenshots"
        shots.mkdir(exist_ok=True)
        path = shots / f"{request.node.name}.png"
        browser.call(lambda: opened.page.screenshot(path=str(path), full_page=True))
        browser.call(opened.page.close)
        print(f"screenshot: {path}")
    assert not opened.errors, opened.errors


@asynccontextmanager
async def bot_with_console(tmp_path: Path) -> AsyncIterator[tuple[Fakes, Bot]]:
    async with open_fakes() as fakes:
        settings = make_settings(fakes, tmp_path / "data", admin_token=ADMIN_TOKEN)
        async with open_bot(fakes, settings) as bot:
            yield fakes, bot


async def say(bot: Bot, text: str) -> None:
    response = await bot.post(payloads.webhook([payloads.text_message(USER, text)]))
    assert response.status_code == 200, response.text


def settled(bot: Bot) -> bool:
    cell = bot.service.supervisor.cell(USER)
    idle = cell is None or (cell.behavior is not None and cell.behavior.is_idle())
    return idle and not bot.service.store.pending_for(USER)


async def log_in(tab: Tab, bot: Bot) -> None:
    def steps() -> None:
        page = tab.page
        page.goto(f"{bot.url}/console/")
        page.wait_for_url("**/console/login")
        page.fill("#token", ADMIN_TOKEN)
        page.click("#login-submit")
        page.wait_for_url(f"{bot.url}/console/")
        page.wait_for_selector("#logout")

    await tab.browser.run(steps)


async def test_log_in_and_watch_a_turn_appear_live(tab: Tab, tmp_path: Path) -> None:
    async with bot_with_console(tmp_path) as (fakes, bot):

        def wrong_token() -> str:
            page = tab.page
            page.goto(f"{bot.url}/console/")
            page.wait_for_url("**/console/login")
            page.fill("#token", "not-the-token")
            page.click("#login-submit")
            return page.inner_text("#login-message")

        assert await tab.browser.run(wrong_token) == "El token no es correcto."
        await log_in(tab, bot)

        def empty_overview() -> tuple[str, str]:
            page = tab.page
            page.wait_for_selector("#active-empty", state="visible")
            return page.inner_text("#hour-turns"), page.inner_text("#live")

        assert await tab.browser.run(empty_overview) == ("0", "0")

        # The model takes 3 s: the customer's turn is on the overview while it runs.
        fakes.openai.faults.delay("/v1/responses$", 3.0, times=1)
        await say(bot, "hola, ¿tienen habitación para dos?")

        def turn_in_flight() -> str:
            row = tab.page.wait_for_selector(f'#active tr[data-user="{USER}"]')
            return row.get_attribute("data-phase")

        assert await tab.browser.run(turn_in_flight) in {"buffering", "thinking"}

        def turn_done() -> tuple[str, int, str]:
            page = tab.page
            page.wait_for_selector(f'#recent tr[data-user="{USER}"][data-outcome="replied"]')
            page.wait_for_function("document.getElementById('hour-turns').textContent === '1'")
            page.wait_for_selector("#active-empty", state="visible")
            health = page.get_attribute('#upstream li[data-upstream="whapi"]', "data-health")
            return (
                page.inner_text("#hour-errors"),
                page.locator("#chart rect.turns").count(),
                health,
            )

        errors, bars, whapi = await tab.browser.run(turn_done)
        assert errors == "0" and bars == 1 and whapi == "ok"
        assert len(fakes.whapi.sent_to(CHAT)) == 1


async def test_pause_resume_and_reset_a_customer_on_a_phone_screen(
    tab: Tab, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.control")
    async with bot_with_console(tmp_path) as (fakes, bot):
        await say(bot, "hola")
        first_reply = (await fakes.whapi.wait_sent(1, to=CHAT))[0].body
        await wait_until(lambda: settled(bot))
        store = bot.service.store
        first_conversation = store.get(USER).conversation_id
        await tab.browser.run(tab.page.set_viewport_size, {"width": 360, "height": 780})
        await log_in(tab, bot)

        def open_customer() -> tuple[str, str, int]:
            page = tab.page
            page.click("#nav-customers")
            page.fill("#q", USER[-7:])
            page.click("#search")
            page.click(f'#customers tr[data-user="{USER}"] a')
            page.wait_for_url(f"**/console/customers/{USER}")
            page.wait_for_selector("#whatsapp li.bot")
            return (
                page.inner_text("#whatsapp"),
                page.inner_text("#conversation-id"),
                page.evaluate("document.documentElement.scrollWidth"),
            )

        chat, conversation, width = await tab.browser.run(open_customer)
        assert first_reply and first_reply in chat
        assert conversation == first_conversation
        assert width <= 360, f"the customer page is {width}px wide on a 360px screen"

        def press(button: str, done: str) -> str:
            page = tab.page
            page.click(button)
            page.wait_for_url(lambda url: url.endswith(f"/console/customers/{USER}?done={done}"))
            return page.inner_text("#done")

        assert await tab.browser.run(press, "#do-pause", "pause") == (
            "El bot quedó en pausa para este cliente."
        )
        await tab.browser.run(tab.page.wait_for_selector, '#pause[data-paused="1"]')
        assert store.get(USER).paused_by == "operator"
        await say(bot, "¿hay alguien?")
        await wait_until(lambda: settled(bot))
        assert len(fakes.whapi.sent_to(CHAT)) == 1, "a paused customer got an answer"

        await tab.browser.run(press, "#do-resume", "resume")
        await tab.browser.run(tab.page.wait_for_selector, '#pause[data-paused="0"]')
        await say(bot, "sigo aquí")
        await fakes.whapi.wait_sent(2, to=CHAT)
        await wait_until(lambda: settled(bot))
        assert store.get(USER).conversation_id == first_conversation

        # Declining the confirmation sends nothing.
        tab.accept_dialogs = False
        await tab.browser.run(tab.page.click, "#do-reset")
        tab.accept_dialogs = True
        await tab.browser.run(press, "#do-reset", "reset")
        assert tab.dialogs == [
            "¿Pausar el bot para este cliente?",
            "¿Reanudar el bot para este cliente?",
            "¿Empezar una conversación nueva? El modelo olvidará la anterior.",
            "¿Empezar una conversación nueva? El modelo olvidará la anterior.",
        ]
        resets = [r for r in caplog.records if r.getMessage().startswith("operator: reset")]
        assert len(resets) == 1, "a declined confirmation still reset"
        await say(bot, "empecemos de nuevo")
        await fakes.whapi.wait_sent(3, to=CHAT)
        await wait_until(lambda: settled(bot))
        second_conversation = store.get(USER).conversation_id
        assert second_conversation and second_conversation != first_conversation

        def reload() -> tuple[str, int]:
            page = tab.page
            page.reload()
            page.wait_for_selector("#whatsapp li.bot")
            return (
                page.inner_text("#conversation-id"),
                page.evaluate("document.documentElement.scrollWidth"),
            )

        shown, width = await tab.browser.run(reload)
        assert shown == second_conversation and width <= 360


async def test_log_out_and_refuse_requests_without_session_or_csrf(
    tab: Tab, tmp_path: Path
) -> None:
    async with bot_with_console(tmp_path) as (fakes, bot):
        await say(bot, "hola")
        await fakes.whapi.wait_sent(1, to=CHAT)
        await wait_until(lambda: settled(bot))
        await log_in(tab, bot)
        pause = f"/console/customers/{USER}/pause"

        def post(body: dict[str, str]) -> dict[str, Any]:
            """A same-origin POST from the console's own page (the session cookie goes)."""
            return tab.page.evaluate(
                """async ([url, body]) => {
                    const response = await fetch(url, {method: "POST",
                        body: new URLSearchParams(body), credentials: "same-origin"});
                    return {status: response.status, url: response.url};
                }""",
                [pause, body],
            )

        def csrf_token() -> str:
            tab.page.goto(f"{bot.url}/console/customers/{USER}")
            return tab.page.get_attribute("#form-pause input[name=csrf]", "value")

        token = await tab.browser.run(csrf_token)
        assert (await tab.browser.run(post, {"minutes": "5"}))["status"] == 403
        assert (await tab.browser.run(post, {"minutes": "5", "csrf": "forged"}))["status"] == 403
        assert bot.service.store.get(USER).paused_until is None, "a refused request paused"

        def log_out() -> tuple[str, str]:
            page = tab.page
            page.click("#logout")
            page.wait_for_url(lambda url: url.endswith("/console/login?bye=1"))
            message = page.inner_text("#login-message")
            page.goto(f"{bot.url}/console/customers/{USER}")
            page.wait_for_url("**/console/login")
            return message, page.url

        message, url = await tab.browser.run(log_out)
        assert message == "Sesión cerrada." and url.endswith("/console/login")
        # The old page's token without the session: sent to the login form, nothing paused.
        stale = await tab.browser.run(post, {"minutes": "5", "csrf": token})
        assert stale["status"] == 200 and stale["url"].endswith("/console/login")
        assert bot.service.store.get(USER).paused_until is None

        def overview_json() -> int:
            return tab.page.evaluate(
                "fetch('/console/api/overview', {credentials: 'same-origin'}).then(r => r.status)"
            )

        assert await tab.browser.run(overview_json) == 401
