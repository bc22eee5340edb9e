"""OpenAI wrapper: one Conversations API conversation per user, turns on the Responses API.

The SDK's own retries are off (``max_retries=0``): it sends no idempotency key, so an automatic
retry of a ``responses.create`` that succeeded server-side would append the turn twice. Our
retry is safe instead: after an ambiguous failure (timeout, 5xx, dropped connection,
``conversation_locked``) it first reads the conversation's newest items, and if our input is
already there with an answer after it, that answer is the result. A ``conversation_locked``
right after an ambiguous failure means our abandoned request is probably still running on
OpenAI's side: the retry then waits for it (bounded by one more client timeout, without using
up an attempt) and recovers its answer, instead of failing the turn or running it twice.

The JSON POSTs of a turn (create a conversation, add items, create a response) are sent
through the transport of the SDK client's own HTTP client (``actors/directpost.py``) with a
body we build ourselves and come back as plain dicts: the SDK's parameter transform and
pydantic models, then its per-request option and header building, cost about 40 % of a model
call's CPU (bench/RESULTS.md, turn overhead). The headers are the
ones the SDK sends, computed once from the client (its identity headers and the API-key
``Authorization``: wabot authenticates with an API key only), and every failure raises the
error class the SDK would raise for it, so retries and classification are unchanged. The cold
paths (reading a conversation back, audio) go through the SDK itself.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

import attrs
import httpx2
import openai
import trio

from actors.directpost import DirectPost, own_transport
from actors.retry import Retryable, RetryPolicy, parse_retry_after, retrying

T = TypeVar("T")
log = logging.getLogger("actors.model")


class ModelError(Exception):
    """The model could not produce an answer for this turn."""


class ConversationNotFound(ModelError):
    """OpenAI no longer knows the conversation (deleted, expired, another project or key).

    Not retried: the caller replaces the conversation with a fresh one and asks again.
    """


@attrs.frozen
class FunctionCall:
    call_id: str
    name: str
    arguments: str


@attrs.frozen
class ModelReply:
    """What one ``responses.create`` produced: text, and function calls to run (if any)."""

    response_id: str | None
    text: str
    calls: tuple[FunctionCall, ...] = ()
    recovered: bool = False


def pool_limits(size: int, keepalive: int | None = None) -> httpx2.Limits:
    """A bounded pool (httpcore scans the whole pool per request)."""
    idle = size if keepalive is None else min(keepalive, size)
    return httpx2.Limits(max_connections=size, max_keepalive_connections=idle)


def pooled_http_client(size: int, keepalive: int | None = None) -> openai.DefaultAsyncHttpxClient:
    """The SDK's HTTP client with a bounded pool."""
    return openai.DefaultAsyncHttpxClient(limits=pool_limits(size, keepalive))


def sdk_headers(client: openai.AsyncOpenAI) -> dict[str, str]:
    """The headers the SDK sends on every request: its identity headers and the API key's."""
    headers = {**client.default_headers, **client.auth_headers}
    return {name: value for name, value in headers.items() if isinstance(value, str)}


_STATUS_ERRORS: dict[int, type[openai.APIStatusError]] = {
    400: openai.BadRequestError,
    401: openai.AuthenticationError,
    403: openai.PermissionDeniedError,
    404: openai.NotFoundError,
    409: openai.ConflictError,
    422: openai.UnprocessableEntityError,
    429: openai.RateLimitError,
}


def status_error(response: httpx2.Response) -> openai.APIStatusError:
    """The SDK's error for a 4xx/5xx answer, built as the SDK builds it (message, body, code)."""
    message = f"Error code: {response.status_code}"
    body: Any = response.text.strip()
    try:
        body = json.loads(body)
    except ValueError:
        pass
    else:
        error = body.get("error", body) if isinstance(body, dict) else None
        detail = error.get("message") if isinstance(error, dict) else None
        if isinstance(detail, str) and detail:
            message += f" - {detail}"
    data = body.get("error", body) if isinstance(body, dict) else body
    status = response.status_code
    cls = openai.InternalServerError if status >= 500 else _STATUS_ERRORS.get(status)
    return (cls or openai.APIStatusError)(message, response=response, body=data)


def user_message(text: str, image_urls: Sequence[str] = ()) -> dict[str, Any]:
    """A user message input item: the text first, then any images."""
    content: list[dict[str, Any]] = [{"type": "input_text", "text": text}]
    content += [{"type": "input_image", "image_url": url, "detail": "auto"} for url in image_urls]
    return {"type": "message", "role": "user", "content": content}


def safety_identifier(user_id: str) -> str:
    """OpenAI asks for a stable per-user id that is not the phone number: a hash of it."""
    return hashlib.sha256(f"wabot:{user_id}".encode()).hexdigest()[:64]


class ModelClient:
    """Owns one ``openai.AsyncOpenAI`` (closed by ``aclose``; under trio GC would not close it)."""

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str | None,
        model: str,
        instructions: str,
        timeout: float,
        policy: RetryPolicy,
        pool_size: int = 32,
        keepalive_size: int = 8,
    ) -> None:
        self.model = model
        self.instructions = instructions
        self._timeout = timeout
        self._policy = policy
        limits = pool_limits(pool_size, keepalive_size)
        transport = own_transport(httpx2, limits)
        self._http = openai.DefaultAsyncHttpxClient(limits=limits, transport=transport)
        self._client = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=base_url,
            max_retries=0,
            timeout=timeout,
            http_client=self._http,
        )
        self._direct = DirectPost(
            httpx2,
            self._http,
            transport,
            str(self._client.base_url),
            sdk_headers(self._client),
            httpx2.Timeout(timeout),
        )

    async def aclose(self) -> None:
        await self._client.close()  # closes ``self._http`` too

    async def _post(self, path: str, body: dict[str, Any]) -> Any:
        """POST a JSON body as is; the decoded JSON answer (errors raise the SDK's classes)."""
        content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        try:
            response = await self._direct.post(path, content)
        except httpx2.TimeoutException as exc:
            raise openai.APITimeoutError(request=exc.request) from exc
        except httpx2.RequestError as exc:
            raise openai.APIConnectionError(request=exc.request) from exc
        if response.status_code >= 400:
            raise status_error(response)
        try:
            return json.loads(response.content)
        except ValueError as exc:
            raise ModelError(f"OpenAI answered {path} with a body that is not JSON") from exc

    async def create_conversation(self, user_id: str) -> str:
        async def attempt(n: int) -> str:
            with trio.fail_after(self._timeout):
                conversation = await _classified(
                    self._post(
                        "/conversations",
                        {"metadata": {"user": safety_identifier(user_id)[:32], "app": "wabot"}},
                    )
                )
            conversation_id = conversation.get("id") if isinstance(conversation, dict) else None
            if not isinstance(conversation_id, str) or not conversation_id:
                raise ModelError("OpenAI created a conversation without an id")
            return conversation_id

        return await _as_model_error(retrying(attempt, self._policy, what="conversations.create"))

    async def add_items(self, conversation_id: str, items: list[dict[str, Any]]) -> None:
        """Append items (e.g. what a human agent wrote) to a conversation."""

        async def attempt(n: int) -> None:
            with trio.fail_after(self._timeout):
                await _classified(
                    self._post(f"/conversations/{conversation_id}/items", {"items": items})
                )

        await _as_model_error(retrying(attempt, self._policy, what="conversations.items.create"))

    async def respond(
        self,
        *,
        conversation_id: str,
        input_items: list[dict[str, Any]],
        user_id: str,
        tools: Sequence[dict[str, Any]] = (),
        instructions: str | None = None,
        resumed: bool = False,
    ) -> ModelReply:
        """One model call on the conversation, retried safely (see the module docstring).

        ``resumed``: this input may have been sent already by a process that died (a turn
        resumed from its stored intent), so the first attempt is treated as a retry after an
        ambiguous failure: an answer already in the conversation is returned, not asked again.
        """
        ambiguous = resumed
        params: dict[str, Any] = {
            "model": self.model,
            "conversation": conversation_id,
            "input": input_items,
            "instructions": instructions or self.instructions,
            "truncation": "auto",
            "store": True,
            "safety_identifier": safety_identifier(user_id),
        }
        if tools:
            params["tools"] = list(tools)

        async def attempt(n: int) -> ModelReply:
            nonlocal ambiguous
            lock_deadline: float | None = None
            while True:
                if ambiguous:
                    recovered = await self._recover(conversation_id, input_items)
                    if recovered is not None:
                        return recovered
                try:
                    with trio.fail_after(self._timeout):
                        response = await _classified(self._post("/responses", params))
                except trio.TooSlowError as exc:
                    ambiguous = True
                    raise Retryable("responses.create timed out") from exc
                except Retryable as exc:
                    if exc.reason == "conversation_locked" and ambiguous:
                        # Locked right after an ambiguous failure: most likely our own earlier
                        # request is still running server-side. Wait for it (bounded by one
                        # more client timeout) without spending an attempt, then look for its
                        # answer instead of starting the turn again.
                        now = trio.current_time()
                        lock_deadline = lock_deadline or now + self._timeout
                        if now < lock_deadline:
                            await trio.sleep(min(lock_deadline - now, self._lock_poll(exc)))
                            continue
                    ambiguous = True
                    raise
                return _reply(response)

        return await _as_model_error(retrying(attempt, self._policy, what="responses.create"))

    def _lock_poll(self, exc: Retryable) -> float:
        """How long to wait before looking again at a locked conversation (with jitter)."""
        hint = exc.retry_after if exc.retry_after else self._timeout / 10
        return min(max(hint, 0.05), 2.0) * random.uniform(0.5, 1.0)

    async def _recover(
        self, conversation_id: str, input_items: list[dict[str, Any]]
    ) -> ModelReply | None:
        """If a previous attempt did complete server-side, return its answer."""
        wanted = _first_text(input_items)
        if wanted is None:
            return None
        try:
            with trio.fail_after(self._timeout):
                page = await self._client.conversations.items.list(
                    conversation_id, limit=20, order="desc"
                )
        except (openai.OpenAIError, trio.TooSlowError) as exc:
            log.warning("could not inspect conversation after an ambiguous failure: %r", exc)
            return None
        newer: list[Any] = []
        for item in page.data:
            data = item.model_dump() if hasattr(item, "model_dump") else dict(item)
            if data.get("type") == "message" and data.get("role") == "user":
                if _content_text(data.get("content")) == wanted:
                    answer = "".join(
                        _content_text(x.get("content")) or ""
                        for x in reversed(newer)
                        if x.get("type") == "message" and x.get("role") == "assistant"
                    )
                    if answer:
                        log.info("recovered a completed response instead of repeating the turn")
                        return ModelReply(None, answer, recovered=True)
                return None
            newer.append(data)
        return None


async def _as_model_error(awaitable: Awaitable[T]) -> T:
    """The final failure of a retried call as a ``ModelError`` (the SDK error is its cause)."""
    try:
        return await awaitable
    except openai.OpenAIError as exc:
        raise ModelError(f"OpenAI failed after retries: {exc.__class__.__name__}: {exc}") from exc


async def _classified(awaitable: Any) -> Any:
    """Await an SDK call, turning transient failures into ``Retryable``."""
    try:
        return await awaitable
    except openai.RateLimitError as exc:
        raise Retryable("rate limited (429)", retry_after=_retry_after(exc)) from exc
    except openai.InternalServerError as exc:
        raise Retryable(f"server error ({exc.status_code})", retry_after=_retry_after(exc)) from exc
    except openai.APITimeoutError as exc:
        raise Retryable("request timed out") from exc
    except openai.APIConnectionError as exc:
        raise Retryable(f"connection error: {exc!r}") from exc
    except openai.BadRequestError as exc:
        if getattr(exc, "code", None) == "conversation_locked":
            raise Retryable("conversation_locked", retry_after=_retry_after(exc)) from exc
        raise ModelError(f"OpenAI rejected the request: {exc.message}") from exc
    except openai.NotFoundError as exc:
        if exc.param == "conversation" or "conversation" in exc.message.lower():
            raise ConversationNotFound(f"OpenAI error 404: {exc.message}") from exc
        raise ModelError(f"OpenAI error 404: {exc.message}") from exc
    except openai.APIStatusError as exc:
        raise ModelError(f"OpenAI error {exc.status_code}: {exc.message}") from exc


def _retry_after(exc: openai.APIStatusError) -> float | None:
    headers = exc.response.headers if exc.response is not None else {}
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    return parse_retry_after(headers.get("retry-after"))


def _reply(response: Any) -> ModelReply:
    """A ``ModelReply`` from the Responses API's JSON: the output text and function calls."""
    if not isinstance(response, dict):
        raise ModelError(f"OpenAI answered with {type(response).__name__}, not a response object")
    calls: list[FunctionCall] = []
    texts: list[str] = []
    output = response.get("output")
    for item in output if isinstance(output, list) else ():
        if not isinstance(item, dict):
            continue
        if item.get("type") == "function_call":
            call_id, name = item.get("call_id"), item.get("name")
            if not isinstance(call_id, str) or not isinstance(name, str):
                raise ModelError("OpenAI returned a function call without call_id or name")
            arguments = item.get("arguments")
            calls.append(FunctionCall(call_id, name, arguments or "{}"))
        elif item.get("type") == "message":
            content = item.get("content")
            for part in content if isinstance(content, list) else ():
                if isinstance(part, dict) and part.get("type") == "output_text":
                    text = part.get("text")
                    texts.append(text if isinstance(text, str) else "")
    response_id = response.get("id")
    return ModelReply(
        response_id=response_id if isinstance(response_id, str) else None,
        text="".join(texts),
        calls=tuple(calls),
    )


def _first_text(items: list[dict[str, Any]]) -> str | None:
    for item in items:
        if item.get("type") == "message" and item.get("role") == "user":
            return _content_text(item.get("content"))
    return None


def _content_text(content: Any) -> str | None:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [
            part.get("text", "")
            for part in content
            if isinstance(part, dict) and part.get("type") in {"input_text", "output_text", "text"}
        ]
        return "".join(texts) if texts else None
    return None


def function_output(call: FunctionCall, output: Any) -> dict[str, Any]:
    """The input item that returns a tool's result to the model."""
    text = output if isinstance(output, str) else json.dumps(output, ensure_ascii=False)
    return {"type": "function_call_output", "call_id": call.call_id, "output": text}
