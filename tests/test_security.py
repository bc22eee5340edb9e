"""Security: who gets in, what can be read, what a hostile client can hold, what the logs say.

Webhook secret (401 without it; required in production); admin token on every admin endpoint;
constant-time comparisons; ``/audio/<file>`` rejects traversal in every spelling with 404;
body and header caps; slow clients are cut off by the read timeout and the idle timer; no
token or API key ever appears in the logs; the fakes only ever listen on loopback.
"""

from __future__ import annotations

import ast
import inspect
import logging
import os
from pathlib import Path

import httpx
import pytest
import trio

import gateway.app
from actors.settings import Settings
from gateway.cli import serve
from sandbox import payloads
from sandbox.run import run_sandbox
from tests.chaos_helpers import raw_request
from tests.harness import (
    OPENAI_KEY,
    SECRET,
    WHAPI_TOKEN,
    Bot,
    fast_config,
    make_settings,
    open_bot,
    open_fakes,
    wait_until,
)

USER = "573007700001"
ADMIN = "admin-token-for-security-tests-0123"


async def test_webhook_secret_is_required(tmp_path: Path) -> None:
    async with open_fakes() as fakes, open_bot(fakes, make_settings(fakes, tmp_path)) as bot:
        body = payloads.webhook([payloads.text_message(USER, "hola")])
        for secret in (None, "", "wrong", SECRET[:-1], SECRET + "x", SECRET.upper(), SECRET + " x"):
            response = await bot.post(body, secret=secret)
            assert response.status_code == 401, secret
        await trio.sleep(0.3)
        assert bot.service.store.stats().pending == 0
        assert bot.service.store.stats().done_ids == 0
        assert len(bot.service.supervisor) == 0 and not fakes.whapi.sent
        assert (await bot.post(body)).status_code == 200


def test_production_refuses_to_start_without_a_webhook_secret(tmp_path: Path) -> None:
    settings = Settings(
        env="production",
        whapi_token=WHAPI_TOKEN,
        openai_api_key=OPENAI_KEY,
        webhook_secret=None,
        data_dir=tmp_path,
    )
    assert serve(settings) == 2


def test_secrets_are_compared_in_constant_time() -> None:
    source = inspect.getsource(gateway.app)
    assert "hmac.compare_digest" in inspect.getsource(gateway.app.secrets_match)
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and any(
            isinstance(o, ast.Eq | ast.NotEq) for o in node.ops
        ):
            names = ast.unparse(node)
            assert not any(word in names for word in ("secret", "token", "authorization")), names


async def admin_calls(bot: Bot, headers: dict[str, str]) -> list[int]:
    statuses = []
    for method, path in (
        ("GET", "/actors"),
        ("GET", f"/actors/{USER}"),
        ("POST", f"/actors/{USER}/pause?create=1"),
        ("POST", f"/actors/{USER}/reset"),
    ):
        response = await bot.http.request(method, f"{bot.url}{path}", headers=headers)
        statuses.append(response.status_code)
    return statuses


async def test_admin_endpoints_require_the_token(tmp_path: Path) -> None:
    async with open_fakes() as fakes:
        settings = make_settings(fakes, tmp_path, admin_token=ADMIN)
        async with open_bot(fakes, settings) as bot:
            for headers in (
                {},
                {"Authorization": ADMIN},
                {"Authorization": f"Basic {ADMIN}"},
                {"Authorization": f"Bearer {ADMIN[:-1]}"},
                {"Authorization": "Bearer x"},
                {"X-Webhook-Secret": SECRET},
            ):
                assert await admin_calls(bot, headers) == [401] * 4, headers
            assert bot.service.store.get(USER) is None, "an unauthorised call changed state"
            ok = await admin_calls(bot, {"Authorization": f"Bearer {ADMIN}"})
            assert ok[0] == 200 and ok[2] == 200
    async with open_fakes() as fakes:
        settings = make_settings(fakes, tmp_path / "off", admin_token=None)
        async with open_bot(fakes, settings) as bot:
            assert await admin_calls(bot, {"Authorization": "Bearer x"}) == [404] * 4


TRAVERSALS = [
    "/audio/../threads-data.json",
    "/audio/..%2fthreads-data.json",
    "/audio/%2e%2e/threads-data.json",
    "/audio/%2e%2e%2fthreads-data.json",
    "/audio/..%5cthreads-data.json",
    "/audio/..\\threads-data.json",
    "/audio/etc/passwd",
    "/audio/....//....//etc/passwd",
    "/audio/%252e%252e%252fthreads-data.json",
    "/audio/%00",
    "/audio/a%00.ogg",
    "/audio/",
    "/audio/.",
    "/audio/..",
    "/audio/C:%5cwindows%5cwin.ini",
    "/audio/" + "A" * 30 + ".ogg",
    "/audio/../../../../../../etc/passwd",
]


async def get_raw(bot: Bot, target: str) -> tuple[int | None, bytes]:
    request = f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode("latin-1")
    status, body, _ = await raw_request(bot.url, request)
    return status, body


async def test_audio_rejects_traversal_with_404(tmp_path: Path) -> None:
    async with open_fakes() as fakes:
        settings = make_settings(fakes, tmp_path / "data", tmp_dir=tmp_path / "audio")
        async with open_bot(fakes, settings) as bot:
            shelf = bot.service.deps.shelf if bot.service.deps is not None else None
            if shelf is None:
                pytest.skip("the audio shelf is not wired in this build (gateway/audio.py)")
            secret_file = tmp_path / "outside.txt"
            secret_file.write_text("top secret")
            good = await shelf.put(b"OggS fake voice note")
            status, body = await get_raw(bot, f"/audio/{good}")
            assert status == 200 and body.endswith(b"OggS fake voice note")
            for target in [
                *TRAVERSALS,
                "/audio/" + str(secret_file).lstrip("/"),
                f"/audio/{good}/..",
                f"/audio/./{good}",
            ]:
                status, body = await get_raw(bot, target)
                assert status == 404 or (status == 400 and b"secret" not in body), (target, status)
                assert b"top secret" not in body and b"root:" not in body
            # A shelved name whose file became a symlink to something outside: 404.
            victim = await shelf.put(b"x")
            (shelf.root / victim).unlink()
            os.symlink(secret_file, shelf.root / victim)
            status, body = await get_raw(bot, f"/audio/{victim}")
            assert status == 404 and b"top secret" not in body


async def test_audio_double_slash_is_404_not_a_redirect(tmp_path: Path) -> None:
    """Found by this suite: these were 308 merged-slash redirects (fixed in gateway/audio.py)."""
    async with open_fakes() as fakes:
        settings = make_settings(fakes, tmp_path / "data", tmp_dir=tmp_path / "audio")
        async with open_bot(fakes, settings) as bot:
            absolute = str(tmp_path / "data" / "threads-data.json")
            for target in ("/audio//etc/passwd", "/audio/%2fetc%2fpasswd", f"/audio/{absolute}"):
                status, _ = await get_raw(bot, target)
                assert status == 404, (target, status)


async def test_body_and_header_caps(tmp_path: Path) -> None:
    async with open_fakes() as fakes:
        settings = make_settings(fakes, tmp_path, max_body_bytes=64 * 1024)
        async with open_bot(fakes, settings) as bot:
            start = trio.current_time()
            big = b'{"messages": [' + b" " * (10 * 2**20) + b"]}"
            response = await bot.post(None, raw=big)
            assert response.status_code == 413
            assert trio.current_time() - start < 3
            # Headers: hypercorn's h11 refuses an incomplete head past 16 KiB; a head that
            # arrives whole in one read (up to 64 KiB) is parsed, beyond that it is 431.
            for kib, allowed in ((8, {200}), (70, {431}), (1024, {431, None})):
                request = (
                    b"POST /hook HTTP/1.1\r\nHost: x\r\nX-Webhook-Secret: "
                    + SECRET.encode()
                    + b"\r\nX-Padding: "
                    + b"p" * (kib * 1024)
                    + b"\r\nContent-Length: 2\r\n\r\n{}"
                )
                status, _, elapsed = await raw_request(bot.url, request, timeout=5)
                assert status in allowed and elapsed < 3, (kib, status, elapsed)
            # Trickled in small pieces, the 16 KiB limit on an incomplete head applies.
            head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"p" * (24 * 1024)
            status, _, elapsed = await raw_request(bot.url, head, timeout=8, chunk=1024)
            assert status in {431, None} and elapsed < 3, (status, elapsed)
            async with httpx.AsyncClient(timeout=5) as fresh:
                assert (await fresh.get(f"{bot.url}/readyz")).status_code == 200
            assert bot.service.store.stats().pending == 0


async def test_slow_clients_are_disconnected(tmp_path: Path) -> None:
    async with open_fakes() as fakes:
        settings = make_settings(fakes, tmp_path)
        async with open_bot(fakes, settings, config=fast_config(settings, read_timeout=1)) as bot:
            partial = b"POST /hook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            # Headers done, body promised but never sent: closed too, never journaled.
            stalled = partial + b"Content-Length: 100\r\nX-Webhook-Secret: " + SECRET.encode()
            status, _, elapsed = await raw_request(bot.url, stalled + b"\r\n\r\n{", timeout=8)
            assert elapsed < 4, elapsed
            # Slowloris: one header byte every 0.4 s never trips a per-read timeout, but the
            # connection's idle timer (hypercorn keep_alive_timeout, 5 s), which runs until the
            # request's headers are complete, bounds the whole head. (A stalled partial head
            # is closed by the same timer: hypercorn's read timeout only ends the read loop.)
            status, _, elapsed = await raw_request(bot.url, partial * 20, trickle=0.4, timeout=15)
            assert status in {None, 408} and elapsed < 8, (status, elapsed)
            assert bot.service.store.stats().pending == 0
            async with httpx.AsyncClient(timeout=5) as fresh:
                assert (await fresh.get(f"{bot.url}/readyz")).status_code == 200


async def test_no_token_or_key_in_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with open_fakes() as fakes:
        settings = make_settings(
            fakes, tmp_path, admin_token=ADMIN, openai_max_attempts=2, whapi_max_attempts=2
        )
        async with open_bot(fakes, settings) as bot:
            fakes.openai.faults.add(r"^/v1/responses$", status=500, times=2)
            fakes.whapi.faults.add(r"^/messages/text$", status=401, times=1)
            await bot.post(payloads.webhook([payloads.text_message(USER, "hola")]))
            await bot.post(payloads.webhook([payloads.text_message(USER, "x")]), secret="bad")
            await bot.post(None, raw=b"{not json")
            await admin_calls(bot, {"Authorization": "Bearer wrong"})
            await admin_calls(bot, {"Authorization": f"Bearer {ADMIN}"})
            resume = f"{bot.url}/actors/{USER}/resume"
            await bot.http.post(resume, headers={"Authorization": f"Bearer {ADMIN}"})
            await wait_until(lambda: bot.service.store.stats().pending == 0, timeout=10)
            await bot.post(payloads.webhook([payloads.text_message(USER, "otra")]))
            await wait_until(lambda: bot.service.store.stats().pending == 0, timeout=10)
            await wait_until(lambda: len(fakes.openai.calls_to(r"^/v1/responses$")) >= 2)
    text = caplog.text + "\n".join(
        logging.Formatter().formatException(r.exc_info) for r in caplog.records if r.exc_info
    )
    text += "\n".join(str(r.args) for r in caplog.records)
    assert len(caplog.records) > 10, "nothing was logged: the scan would prove nothing"
    for secret in (WHAPI_TOKEN, OPENAI_KEY, SECRET, ADMIN):
        assert secret not in text, f"{secret[:6]}… leaked into the logs"


async def test_fakes_only_listen_on_loopback(tmp_path: Path) -> None:
    async with open_fakes() as fakes:
        for url in (fakes.whapi_url, fakes.openai_url):
            assert url.startswith("http://127.0.0.1:"), url
        settings = make_settings(fakes, tmp_path)
        assert settings.whapi_api_url.startswith("http://127.0.0.1:")
        assert (settings.openai_base_url or "").startswith("http://127.0.0.1:")
    async with trio.open_nursery() as nursery:
        sandbox = await nursery.start(
            lambda task_status: run_sandbox(
                whapi_token=WHAPI_TOKEN, openai_key=OPENAI_KEY, task_status=task_status
            )
        )
        for url in (sandbox.whapi_url, sandbox.openai_url):
            assert url.startswith("http://127.0.0.1:"), url
        nursery.cancel_scope.cancel()
