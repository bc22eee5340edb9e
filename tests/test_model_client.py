"""The model client on the SDK's typed resources, over real HTTP: errors, retries, requests.

Every failure the fake can produce reaches the client as the SDK's own error class, and
``upstream.model.retryable`` classifies it once: 429, 5xx, ``conversation_locked``, timeouts and
dropped connections are retried (with the server's ``Retry-After`` as the least wait), every
other answer fails the call at once as a ``ModelError`` whose cause is the SDK's error. The SDK
never retries by itself, and what reaches the server is the request as built.
"""

from __future__ import annotations

from typing import Any

import openai
import pytest
import trio

from actors.upstream.model import ConversationNotFound, ModelClient, ModelError, retryable
from actors.upstream.retry import RetryPolicy
from tests.harness import OPENAI_KEY, open_fakes

CONVERSATIONS = r"/conversations$"


def _client(url: str, timeout: float = 2.0, attempts: int = 1) -> ModelClient:
    return ModelClient(
        api_key=OPENAI_KEY,
        base_url=url,
        model="gpt-4o-mini",
        instructions="Eres un asistente.",
        timeout=timeout,
        policy=RetryPolicy(attempts=attempts, base_seconds=0.01, max_seconds=0.01),
    )


async def _failure(client: ModelClient) -> BaseException:
    """The SDK's error behind the ``ModelError`` of a failed ``conversations.create``."""
    with pytest.raises(ModelError) as info:
        await client.create_conversation("573001112233")
    assert info.value.__cause__ is not None
    return info.value.__cause__


LOCKED = {"error": {"message": "locked", "code": "conversation_locked"}}
#: A fault, the SDK's error class for it, and ``retryable``'s verdict (None: not retried).
FAILURES: list[tuple[dict[str, Any], type[openai.APIStatusError], float | None]] = [
    ({"status": 400, "body": LOCKED}, openai.BadRequestError, 0.0),
    ({"status": 400}, openai.BadRequestError, None),
    ({"status": 401}, openai.AuthenticationError, None),
    ({"status": 403}, openai.PermissionDeniedError, None),
    ({"status": 404}, openai.NotFoundError, None),
    ({"status": 409}, openai.ConflictError, None),
    ({"status": 422}, openai.UnprocessableEntityError, None),
    ({"status": 429, "retry_after": 3}, openai.RateLimitError, 3.0),
    ({"status": 418}, openai.APIStatusError, None),
    ({"status": 500}, openai.InternalServerError, 0.0),
    ({"status": 503, "retry_after": 1}, openai.InternalServerError, 1.0),
]


@pytest.mark.parametrize(
    ("fault", "error", "verdict"),
    FAILURES,
    ids=[f"{f['status']}{'-locked' if 'body' in f else ''}" for f, _, _ in FAILURES],
)
async def test_every_error_status_is_the_sdk_s_and_classified_once(
    fault: dict[str, Any], error: type[openai.APIStatusError], verdict: float | None
) -> None:
    async with open_fakes() as fakes:
        client = _client(fakes.openai_url)
        try:
            fakes.openai.faults.add(CONVERSATIONS, method="POST", times=1, **fault)
            got = await _failure(client)
        finally:
            await client.aclose()
        calls = fakes.openai.calls_to(r"^/v1/conversations$", "POST")
    assert type(got) is error
    assert isinstance(got, openai.APIStatusError)
    assert got.status_code == fault["status"]
    assert (got.code == "conversation_locked") == ("body" in fault)
    assert got.response.headers.get("retry-after") == (
        str(fault["retry_after"]) if "retry_after" in fault else None
    )
    assert retryable(got) == verdict
    assert len(calls) == 1, "the SDK retried by itself"
    assert calls[0].headers.get("x-stainless-retry-count") == "0"


async def test_a_retryable_failure_is_retried_and_another_is_not() -> None:
    async with open_fakes() as fakes:
        client = _client(fakes.openai_url, attempts=3)
        try:
            fakes.openai.faults.add(CONVERSATIONS, method="POST", status=503, times=2)
            assert (await client.create_conversation("573001112233")).startswith("conv_")
            fakes.openai.faults.add(CONVERSATIONS, method="POST", status=401, times=1)
            assert isinstance(await _failure(client), openai.AuthenticationError)
        finally:
            await client.aclose()
        statuses = [c.status for c in fakes.openai.calls_to(r"^/v1/conversations$", "POST")]
    assert statuses == [503, 503, 200, 401]


async def test_a_dropped_request_is_a_connection_error_and_a_slow_one_a_timeout() -> None:
    async with open_fakes() as fakes:
        client = _client(fakes.openai_url, timeout=0.3)
        try:
            fakes.openai.faults.add(CONVERSATIONS, method="POST", delay=2.0, status=200, times=1)
            got = await _failure(client)
            # The SDK's read timeout or our deadline on the attempt, whichever fires first.
            assert isinstance(got, openai.APITimeoutError | trio.TooSlowError)
            assert retryable(got) == 0.0
        finally:
            await client.aclose()
    # A server that is gone: connection refused, as the SDK reports it.
    client = _client(fakes.openai_url)
    try:
        got = await _failure(client)
    finally:
        await client.aclose()
    assert type(got) is openai.APIConnectionError
    assert retryable(got) == 0.0


async def test_a_conversation_openai_does_not_know_is_conversation_not_found() -> None:
    async with open_fakes() as fakes:
        client = _client(fakes.openai_url, attempts=3)
        try:
            with pytest.raises(ConversationNotFound) as info:
                await client.respond(
                    conversation_id="conv_gone",
                    input_items=[{"role": "user", "content": "hola"}],
                    user_id="573001112233",
                )
        finally:
            await client.aclose()
        calls = fakes.openai.calls_to(r"^/v1/responses$", "POST")
    assert isinstance(info.value.__cause__, openai.NotFoundError)
    assert len(calls) == 1, "a lost conversation is not retried"


async def test_the_server_sees_the_request_as_built() -> None:
    async with open_fakes() as fakes:
        client = _client(fakes.openai_url)
        try:
            conversation = await client.create_conversation("573001112233")
            reply = await client.respond(
                conversation_id=conversation,
                input_items=[{"role": "user", "content": "hola"}],
                user_id="573001112233",
            )
        finally:
            await client.aclose()
        [created] = fakes.openai.calls_to(r"^/v1/conversations$", "POST")
        [responded] = fakes.openai.calls_to(r"^/v1/responses$", "POST")
    assert conversation.startswith("conv_") and reply.text == "Recibido: hola"
    assert reply.response_id and not reply.calls
    assert created.json["metadata"]["app"] == "wabot"
    assert created.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    body = responded.json
    assert body["conversation"] == conversation
    assert body["input"] == [{"role": "user", "content": "hola"}]
    assert body["instructions"] == "Eres un asistente."
    assert (body["truncation"], body["store"], body["model"]) == ("auto", True, "gpt-4o-mini")
    assert len(body["safety_identifier"]) == 64 and "573001112233" not in str(body)


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
                await client.respond(
                    conversation_id="conv_1",
                    input_items=[{"role": "user", "content": "hola"}],
                    user_id="573001112233",
                )
        finally:
            await client.aclose()
        nursery.cancel_scope.cancel()


async def test_list_items_gives_the_newest_items_oldest_first() -> None:
    async with open_fakes() as fakes:
        client = _client(fakes.openai_url)
        try:
            conversation = await client.create_conversation("573001112233")
            for text in ("uno", "dos"):
                await client.respond(
                    conversation_id=conversation,
                    input_items=[{"type": "message", "role": "user", "content": text}],
                    user_id="573001112233",
                )
            items = await client.list_items(conversation, limit=20)
            last_two = await client.list_items(conversation, limit=2)
        finally:
            await client.aclose()
    roles = [i.get("role") for i in items if i.get("type") == "message"]
    assert roles[-4:] == ["user", "assistant", "user", "assistant"], items
    assert last_two == items[-2:]


async def test_a_retry_that_cannot_look_at_the_conversation_does_not_ask_again() -> None:
    """Found by the chaos crash test: after an ambiguous failure the recovery's look at the
    conversation timed out, the retry asked anyway, and the input sat in the conversation
    twice. Now a failed look is a failed attempt; the next attempt looks again."""
    async with open_fakes() as fakes:
        client = _client(fakes.openai_url, attempts=3)
        try:
            conversation = await client.create_conversation("573001112233")
            # The first call completes on the server but its answer is lost (ambiguous), and
            # the first look at the conversation fails too.
            fakes.openai.faults.add(r"/responses$", status=500, after_processing=True, times=1)
            fakes.openai.faults.add(r"/items$", method="GET", status=500, times=1)
            reply = await client.respond(
                conversation_id=conversation,
                input_items=[
                    {
                        "type": "message",
                        "role": "user",
                        "content": [{"type": "input_text", "text": "¿hay sitio el sábado?"}],
                    }
                ],
                user_id="573001112233",
            )
        finally:
            await client.aclose()
        assert reply.recovered, "the answer already in the conversation is the result"
        items = fakes.openai.conversations[conversation]
        users = [i for i in items if i.get("role") == "user"]
        assert len(users) == 1, "the input reached the model once"
