"""The model client's own JSON POST behaves as the OpenAI SDK does, over real HTTP.

``ModelClient._post`` sends the turn's POSTs on the SDK's HTTP client without the SDK's request
machinery (bench/RESULTS.md, turn overhead). These tests hold it to the SDK: the same headers
reach the server, and for every kind of failure the fake can produce it raises the very error
the SDK raises for the same answer (class, status, code, message), so retry classification
cannot drift from what the SDK would have told us.
"""

from __future__ import annotations

from typing import Any

import openai
import pytest
import trio

from actors.model import ModelClient, ModelError
from actors.retry import RetryPolicy
from tests.harness import OPENAI_KEY, open_fakes

CONVERSATIONS = r"/conversations$"


def _client(url: str, timeout: float = 2.0) -> ModelClient:
    return ModelClient(
        api_key=OPENAI_KEY,
        base_url=url,
        model="gpt-4o-mini",
        instructions="Eres un asistente.",
        timeout=timeout,
        policy=RetryPolicy(attempts=1, base_seconds=0.01, max_seconds=0.01),
    )


async def _sdk_error(client: ModelClient, body: dict[str, Any]) -> BaseException:
    with pytest.raises(openai.OpenAIError) as info:
        await client._client.post("/conversations", body=body, cast_to=object)
    return info.value


async def _our_error(client: ModelClient, body: dict[str, Any]) -> BaseException:
    with pytest.raises(openai.OpenAIError) as info:
        await client._post("/conversations", body)
    return info.value


FAILURES: list[dict[str, Any]] = [
    {"status": 400, "body": {"error": {"message": "locked", "code": "conversation_locked"}}},
    {"status": 401},
    {"status": 403},
    {"status": 404},
    {"status": 409},
    {"status": 422},
    {"status": 429, "retry_after": 3},
    {"status": 418},
    {"status": 500},
    {"status": 503, "retry_after": 1},
]


@pytest.mark.parametrize("fault", FAILURES, ids=lambda f: str(f["status"]))
async def test_every_error_status_raises_what_the_sdk_raises(fault: dict[str, Any]) -> None:
    body = {"metadata": {"app": "wabot"}}
    async with open_fakes() as fakes:
        client = _client(fakes.openai_url)
        try:
            fakes.openai.faults.add(CONVERSATIONS, method="POST", times=2, **fault)
            expected = await _sdk_error(client, body)
            got = await _our_error(client, body)
        finally:
            await client.aclose()
    assert type(got) is type(expected)
    assert isinstance(got, openai.APIStatusError) and isinstance(expected, openai.APIStatusError)
    assert got.status_code == expected.status_code == fault["status"]
    assert got.code == expected.code
    assert got.body == expected.body
    assert str(got) == str(expected)
    assert got.response.headers.get("retry-after") == expected.response.headers.get("retry-after")


async def test_a_dropped_request_is_a_connection_error_and_a_slow_one_a_timeout() -> None:
    async with open_fakes() as fakes:
        client = _client(fakes.openai_url, timeout=0.3)
        try:
            fakes.openai.faults.add(CONVERSATIONS, method="POST", delay=2.0, status=200, times=2)
            expected = await _sdk_error(client, {})
            got = await _our_error(client, {})
            assert type(got) is type(expected) is openai.APITimeoutError
        finally:
            await client.aclose()
    # A server that is gone: connection refused, as the SDK reports it.
    client = _client(fakes.openai_url)
    try:
        got = await _our_error(client, {})
        expected = await _sdk_error(client, {})
    finally:
        await client.aclose()
    assert type(got) is type(expected) is openai.APIConnectionError


async def test_the_server_sees_the_sdk_headers_and_the_body_as_built() -> None:
    async with open_fakes() as fakes:
        client = _client(fakes.openai_url)
        try:
            conversation = await client._post("/conversations", {"metadata": {"app": "wabot"}})
            await client._client.post(
                "/conversations", body={"metadata": {"app": "wabot"}}, cast_to=object
            )
        finally:
            await client.aclose()
        ours, sdks = [c for c in fakes.openai.calls if c.path == "/v1/conversations"]
    assert conversation["id"].startswith("conv_")
    assert ours.json == sdks.json
    # Per-request headers the SDK adds (retry count, read timeout, idempotency) aside, the
    # same identity and authentication.
    per_request = {"x-stainless-retry-count", "x-stainless-read-timeout", "idempotency-key"}
    for name, value in sdks.headers.items():
        if name.lower() in per_request or name.lower() in {"content-length", "host"}:
            continue
        assert ours.headers.get(name) == value, name


async def _plain_text_server(task_status: trio.TaskStatus[str]) -> None:
    """A real HTTP server on loopback that answers every request 200 with plain text."""

    async def answer(stream: trio.SocketStream) -> None:
        async with stream:
            request = b""
            while b"\r\n\r\n" not in request:
                request += await stream.receive_some(65536)
            head, _, body = request.partition(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            while len(body) < length:
                body += await stream.receive_some(65536)
            await stream.send_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                b"Content-Length: 5\r\nConnection: close\r\n\r\nhello"
            )

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        task_status.started(f"http://127.0.0.1:{port}/v1")
        await trio.serve_listeners(answer, listeners, handler_nursery=nursery)


async def test_a_success_that_is_not_json_is_a_model_error() -> None:
    async with trio.open_nursery() as nursery:
        url = await nursery.start(_plain_text_server)
        client = _client(url)
        try:
            with pytest.raises(ModelError, match="not JSON"):
                await client._post("/conversations", {})
        finally:
            await client.aclose()
        nursery.cancel_scope.cancel()
