"""The webhook endpoint (``gateway.hook``) in front of the Quart app.

Secrets, draining, size caps and malformed JSON are covered over HTTP by test_security,
test_core and test_fuzz_webhook, a flood of big bodies by test_big_bodies. Here: what only
this endpoint decides (other methods, a body sent in pieces, one that never completes, a
client that leaves, a big body parsed in a worker thread), and that every other path still
reaches Quart.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
import trio

import gateway.hook
from gateway.hook import OFFLOAD_BYTES, HookEndpoint
from sandbox.payloads import text_message, webhook
from tests.harness import SECRET, make_settings, open_bot, open_fakes, wait_until


async def test_other_methods_are_405_and_other_paths_reach_quart(tmp_path: Path) -> None:
    async with (
        open_fakes() as fakes,
        open_bot(fakes, make_settings(fakes, tmp_path / "data")) as bot,
    ):
        for method in ("GET", "PUT", "DELETE"):
            response = await bot.http.request(method, f"{bot.url}/hook")
            assert response.status_code == 405, method
            assert response.headers["allow"] == "POST"
            assert response.json() == {"error": "method not allowed"}
        assert (await bot.http.get(f"{bot.url}/healthz")).json() == {"status": "alive"}
        assert (await bot.http.get(f"{bot.url}/nowhere")).status_code == 404
        assert (await bot.http.post(f"{bot.url}/hook/")).status_code == 404


async def test_a_body_sent_in_pieces_is_one_webhook(tmp_path: Path) -> None:
    async with (
        open_fakes() as fakes,
        open_bot(fakes, make_settings(fakes, tmp_path / "data")) as bot,
    ):
        raw = json.dumps(webhook([text_message("573001112233", "hola en partes")])).encode()

        async def pieces() -> Any:
            for start in range(0, len(raw), 7):
                yield raw[start : start + 7]
                await trio.sleep(0)

        response = await bot.http.post(
            f"{bot.url}/hook",
            content=pieces(),  # chunked transfer encoding, no Content-Length
            headers={"Content-Type": "application/json", "X-Webhook-Secret": SECRET},
        )
        assert response.status_code == 200, response.text
        assert response.json() == {"received": True}
        await wait_until(lambda: len(fakes.whapi.calls_to("/messages/text")) == 1)


async def test_a_big_body_is_parsed_in_a_worker_thread_and_journaled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[threading.Thread] = []
    decode_and_parse = gateway.hook._decode_and_parse

    def recorded(parse: Any, raw: bytes) -> Any:
        threads.append(threading.current_thread())
        return decode_and_parse(parse, raw)

    monkeypatch.setattr(gateway.hook, "_decode_and_parse", recorded)
    async with (
        open_fakes() as fakes,
        open_bot(fakes, make_settings(fakes, tmp_path / "data")) as bot,
    ):
        text = "una consulta muy larga " * (OFFLOAD_BYTES // 20)
        small = webhook([text_message("573001112255", "hola")])
        big = webhook([text_message("573001112266", text)])
        assert len(json.dumps(small)) <= OFFLOAD_BYTES < len(json.dumps(big))
        assert (await bot.post(small)).status_code == 200
        assert threads == []  # a small body is decoded on the event loop
        response = await bot.post(big)
        assert response.status_code == 200, response.text
        assert len(threads) == 1 and threads[0] is not threading.main_thread()
        for user in ("573001112255", "573001112266"):  # each is answered
            assert await fakes.whapi.wait_sent(1, to=user)
        assert (await bot.post(None, raw=b"[" * OFFLOAD_BYTES + b"]")).status_code == 400


class Recorder:
    """Collects what the endpoint sends."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def __call__(self, message: Any) -> None:
        self.messages.append(dict(message))

    @property
    def status(self) -> int | None:
        starts = [m for m in self.messages if m["type"] == "http.response.start"]
        return starts[0]["status"] if starts else None


def _scope(length: int | None = None) -> dict[str, Any]:
    headers = [(b"x-webhook-secret", SECRET.encode())]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    return {"type": "http", "path": "/hook", "method": "POST", "headers": headers}


async def quart_never_called(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("POST /hook must not reach Quart")


async def test_a_body_that_never_completes_is_408_and_journals_nothing(tmp_path: Path) -> None:
    async with (
        open_fakes() as fakes,
        open_bot(fakes, make_settings(fakes, tmp_path / "data")) as bot,
    ):
        service = bot.service
        endpoint = HookEndpoint(service, quart_never_called, body_timeout=0.3)
        sent = Recorder()
        first = {"type": "http.request", "body": b'{"messages": [', "more_body": True}

        async def receive() -> dict[str, Any]:
            nonlocal first
            if first is not None:
                message, first = first, None
                return message
            await trio.sleep_forever()
            raise AssertionError

        started = trio.current_time()
        with trio.fail_after(5):
            await endpoint(_scope(1000), receive, sent)
        assert sent.status == 408
        assert trio.current_time() - started >= 0.3
        assert service.http_rejections.get("body_timeout") == 1
        assert service.store.stats().pending == 0


async def test_a_client_that_leaves_gets_no_answer_and_journals_nothing(tmp_path: Path) -> None:
    async with (
        open_fakes() as fakes,
        open_bot(fakes, make_settings(fakes, tmp_path / "data")) as bot,
    ):
        service = bot.service
        endpoint = HookEndpoint(service, quart_never_called)
        messages = [
            {"type": "http.request", "body": b'{"messages": [', "more_body": True},
            {"type": "http.disconnect"},
        ]

        async def receive() -> dict[str, Any]:
            return messages.pop(0)

        sent = Recorder()
        await endpoint(_scope(), receive, sent)
        assert sent.messages == []
        assert service.store.stats().pending == 0
        # And a body over the cap, without a Content-Length, stops being read at the cap.
        big = [
            {"type": "http.request", "body": b" " * 1024, "more_body": True}
            for _ in range(service.settings.max_body_bytes // 1024 + 2)
        ]

        async def receive_big() -> dict[str, Any]:
            return big.pop(0)

        sent = Recorder()
        await endpoint(_scope(), receive_big, sent)
        assert sent.status == 413
        assert big  # the rest was never read
        assert (await bot.http.get(f"{bot.url}/readyz")).status_code == 200
