"""Both upstream clients over real HTTP, on the libraries' own clients.

What reaches Whapi is the request as built, a failed send carries its request, and a proxy
named in the environment is used by the Whapi client (``httpx``) and the model client (the
OpenAI SDK's ``httpx2``) alike.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
import trio

from actors.upstream.model import ModelClient
from actors.upstream.retry import RetryPolicy
from actors.upstream.whapi import WhapiClient, WhapiError
from tests.harness import OPENAI_KEY, WHAPI_TOKEN, open_fakes

POLICY = RetryPolicy(attempts=1, base_seconds=0.01, max_seconds=0.01)
PAYLOAD = {"to": "573001112233@s.whatsapp.net", "body": "¡Hola! ¿Cómo estás? ñ"}


async def test_a_send_reaches_whapi_as_built() -> None:
    async with open_fakes() as fakes:
        whapi = WhapiClient(base_url=fakes.whapi_url, token=WHAPI_TOKEN, timeout=5, policy=POLICY)
        try:
            sent = await whapi.send_text(PAYLOAD["to"], PAYLOAD["body"])
        finally:
            await whapi.aclose()
        [ours] = [c for c in fakes.whapi.calls if c.path == "/messages/text"]
    assert sent.message_id
    assert ours.json == PAYLOAD
    headers = {k.lower(): v for k, v in ours.headers.items()}
    assert headers["authorization"] == f"Bearer {WHAPI_TOKEN}"
    assert headers["accept"] == "application/json"
    assert headers["content-type"] == "application/json"


async def test_a_timeout_carries_its_request() -> None:
    async with open_fakes() as fakes:
        fakes.whapi.faults.add(r"/messages/text$", method="POST", delay=2.0, status=200)
        whapi = WhapiClient(base_url=fakes.whapi_url, token=WHAPI_TOKEN, timeout=0.2, policy=POLICY)
        try:
            with pytest.raises(WhapiError) as info:
                await whapi.send_text(PAYLOAD["to"], PAYLOAD["body"])
        finally:
            await whapi.aclose()
    cause = info.value.__cause__
    assert isinstance(cause, httpx.TimeoutException)
    assert cause.request.url.path.endswith("/messages/text")


@asynccontextmanager
async def _proxy(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[list[bytes]]:
    """A loopback HTTP proxy named in ``HTTP_PROXY`` (no other proxy variable set).

    It answers every request itself; yields the request lines it received. Nothing listens on
    the upstream addresses the tests use (the discard port): only the proxy can answer.
    """
    seen: list[bytes] = []

    async def answer(stream: trio.SocketStream) -> None:
        async with stream:
            request = b""
            while b"\r\n\r\n" not in request:
                request += await stream.receive_some(65536)
            seen.append(request.split(b"\r\n", 1)[0])
            # Whapi's send answer and a conversation at once: both clients read their id.
            body = b'{"id":"via-proxy","sent":true,"message":{"id":"via-proxy"}}'
            await stream.send_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
            )

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, answer, listeners)
        yield seen
        nursery.cancel_scope.cancel()


async def test_the_whapi_client_uses_a_proxy_in_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with _proxy(monkeypatch) as seen:
        whapi = WhapiClient(
            base_url="http://127.0.0.1:9/", token=WHAPI_TOKEN, timeout=5, policy=POLICY
        )
        try:
            sent = await whapi.send_text(PAYLOAD["to"], PAYLOAD["body"])
        finally:
            await whapi.aclose()
    assert sent.message_id == "via-proxy"
    assert seen == [b"POST http://127.0.0.1:9/messages/text HTTP/1.1"]


async def test_the_model_client_uses_a_proxy_in_the_environment_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with _proxy(monkeypatch) as seen:
        model = ModelClient(
            api_key=OPENAI_KEY,
            base_url="http://127.0.0.1:9/v1",
            model="gpt-4o-mini",
            instructions="Eres un asistente.",
            timeout=5,
            policy=POLICY,
        )
        try:
            conversation = await model.create_conversation("573001112233")
        finally:
            await model.aclose()
    assert conversation == "via-proxy"
    assert seen == [b"POST http://127.0.0.1:9/v1/conversations HTTP/1.1"]
