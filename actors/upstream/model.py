"""OpenAI wrapper: one Conversations API conversation per user, turns on the Responses API.

Every call goes through the SDK's typed resources (``conversations.create``,
``conversations.items.create``/``list``/``delete``, ``responses.create``) and fails with the
SDK's error classes. ``retryable`` is OpenAI's one rule of which failures get another attempt
(429, 5xx, ``conversation_locked``, timeouts, dropped connections; with the server's
``Retry-After``); ``voice.audio`` uses it too. The last failure becomes a ``ModelError``
(``ConversationNotFound`` for a 404 of the conversation), with the SDK's error as its cause.

The SDK's own retries are off (``max_retries=0``): it sends no idempotency key, so an automatic
retry of a ``responses.create`` that succeeded server-side would append the turn twice. Our
retry is safe instead: after an ambiguous failure (timeout, 5xx, dropped connection,
``conversation_locked``) it first reads the conversation's newest items, and if our input is
already there with an answer after it, that answer is the result; when it cannot read them,
that attempt fails and the next one looks again (it never asks without having looked). A
``conversation_locked``
right after an ambiguous failure means our abandoned request is probably still running on
OpenAI's side: the retry then waits for it (bounded by one more client timeout, without using
up an attempt) and recovers its answer, instead of failing the turn or running it twice.

A turn superseded by the customer's later messages (``actors.customer.turn``) is taken back
with ``discard_turn``: its input and everything answered after it are deleted from the
conversation, so the conversation says only what the customer saw.

Every answer OpenAI gives (an httpx ``response`` event hook on the SDK's client) tells the
rate-limit budget what OpenAI counts (its ``x-ratelimit-*`` headers), and a 429 holds the whole
budget for its ``Retry-After``, so one rate-limit answer does not become a storm of them; a
reply carries the tokens OpenAI says the call used, to correct the budget's estimate.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import httpx2
import openai
import trio
from openai.types.responses import Response

from actors.upstream.budget import ModelBudget
from actors.upstream.poolwait import PoolWaits
from actors.upstream.retry import RetryPolicy, parse_retry_after

log = logging.getLogger("actors.upstream.model")


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
class Citation:
    """A document an answer cites (a ``file_citation`` annotation of its text)."""

    file_id: str
    filename: str


@attrs.frozen
class ModelReply:
    """What one ``responses.create`` produced: text, and function calls to run (if any);
    whether it searched the business's documents (``file_search``) and which it cited."""

    response_id: str | None
    text: str
    calls: tuple[FunctionCall, ...] = ()
    recovered: bool = False
    #: Tokens OpenAI counted for the call (None when it did not say, or for a recovered answer).
    tokens: int | None = None
    searched: bool = False
    citations: tuple[Citation, ...] = ()


def pool_limits(size: int, keepalive: int | None = None) -> httpx2.Limits:
    """A bounded pool (httpcore scans the whole pool per request)."""
    idle = size if keepalive is None else min(keepalive, size)
    return httpx2.Limits(max_connections=size, max_keepalive_connections=idle)


def pooled_http_client(
    size: int, keepalive: int | None = None, event_hooks: Mapping[str, list[Any]] | None = None
) -> openai.DefaultAsyncHttpxClient:
    """The SDK's HTTP client with a bounded pool (and httpx event hooks, if any)."""
    return openai.DefaultAsyncHttpxClient(
        limits=pool_limits(size, keepalive), event_hooks=dict(event_hooks or {})
    )


def retryable(exc: BaseException) -> float | None:
    """OpenAI's retryable failures (a ``retry.Classifier``): the least wait, or None."""
    if isinstance(exc, openai.APIStatusError):
        if isinstance(exc, openai.RateLimitError | openai.InternalServerError) or _locked(exc):
            return _retry_after(exc) or 0.0
        return None
    # APITimeoutError is an APIConnectionError; TooSlowError is our deadline on an attempt.
    if isinstance(exc, openai.APIConnectionError | trio.TooSlowError):
        return 0.0
    return None


def _locked(exc: BaseException) -> bool:
    """Another response is in progress on the conversation (400 ``conversation_locked``)."""
    return isinstance(exc, openai.BadRequestError) and exc.code == "conversation_locked"


def _retry_after(exc: openai.APIStatusError) -> float | None:
    return retry_after_of(exc.response.headers)


def retry_after_of(headers: Mapping[str, str]) -> float | None:
    """OpenAI's ``retry-after-ms`` or ``retry-after``, in seconds (None without either)."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    return parse_retry_after(headers.get("retry-after"))


def model_error(exc: BaseException) -> ModelError:
    """The ``ModelError`` for a call's last failure (raise it ``from exc``)."""
    if isinstance(exc, openai.NotFoundError) and (
        exc.param == "conversation" or "conversation" in exc.message.lower()
    ):
        return ConversationNotFound(f"OpenAI error 404: {exc.message}")
    if isinstance(exc, openai.BadRequestError) and not _locked(exc):
        return ModelError(f"OpenAI rejected the request: {exc.message}")
    if isinstance(exc, openai.APIStatusError):
        return ModelError(f"OpenAI error {exc.status_code}: {exc.message}")
    return ModelError(f"OpenAI failed after retries: {exc.__class__.__name__}: {exc}")


#: What a call's last failure can be: an SDK error, or our deadline on an attempt.
FAILURES = (openai.OpenAIError, trio.TooSlowError)
#: How many of a conversation's newest items ``discard_turn`` looks through for the turn.
DISCARD_LOOKBACK = 50
#: How long a 429 without ``Retry-After`` holds the budget.
RATE_LIMIT_HOLD_SECONDS = 1.0


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
        budget: ModelBudget | None = None,
        on_pool_wait: Callable[[float], None] | None = None,
    ) -> None:
        self.model = model
        self.instructions = instructions
        self._timeout = timeout
        self._policy = policy
        self._budget = budget
        hooks: dict[str, list[Any]] = {"response": [self._saw_response]}
        if on_pool_wait is not None:
            hooks["request"] = [PoolWaits(on_pool_wait).on_request]
        self._client = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=base_url,
            max_retries=0,
            timeout=timeout,
            http_client=pooled_http_client(pool_size, keepalive_size, hooks),
        )

    async def _saw_response(self, response: httpx2.Response) -> None:
        """Every answer aligns the budget with OpenAI's count; a 429 holds it."""
        if self._budget is None:
            return
        self._budget.learn(response.headers)
        if response.status_code == 429:
            self._budget.hold(retry_after_of(response.headers) or RATE_LIMIT_HOLD_SECONDS)

    async def aclose(self) -> None:
        await self._client.close()  # closes its HTTP client too

    async def create_conversation(self, user_id: str) -> str:
        metadata = {"user": safety_identifier(user_id)[:32], "app": "wabot"}
        try:
            async for attempt in self._policy.retrying(retryable, what="conversations.create"):
                with attempt, trio.fail_after(self._timeout):
                    conversation = await self._client.conversations.create(metadata=metadata)
        except FAILURES as exc:
            raise model_error(exc) from exc
        conversation_id = getattr(conversation, "id", None)
        if not isinstance(conversation_id, str) or not conversation_id:
            raise ModelError("OpenAI created a conversation without an id")
        return conversation_id

    async def add_items(self, conversation_id: str, items: list[dict[str, Any]]) -> None:
        """Append items (e.g. what a human agent wrote) to a conversation."""
        what = "conversations.items.create"
        try:
            async for attempt in self._policy.retrying(retryable, what=what):
                with attempt, trio.fail_after(self._timeout):
                    await self._client.conversations.items.create(conversation_id, items=items)
        except FAILURES as exc:
            raise model_error(exc) from exc

    async def list_items(self, conversation_id: str, *, limit: int = 20) -> list[dict[str, Any]]:
        """The conversation's newest ``limit`` items, oldest first (what the console shows)."""
        what = "conversations.items.list"
        try:
            async for attempt in self._policy.retrying(retryable, what=what):
                with attempt, trio.fail_after(self._timeout):
                    page = await self._client.conversations.items.list(
                        conversation_id, limit=limit, order="desc"
                    )
        except FAILURES as exc:
            raise model_error(exc) from exc
        return [item.model_dump() for item in reversed(page.data)]

    async def discard_turn(self, conversation_id: str, input_text: str) -> bool:
        """Take an abandoned turn back: delete its user input and every item after it.

        For a turn whose response completed (so its input and output were appended to the
        conversation) but whose answer the customer will never see. We hold the conversation
        (the actor's lock), so the turn's input is the newest user message and what follows
        it is the turn's own output (answer, function calls, a validator's note). That input
        is found as ``_recover`` finds one: the newest user message, if its text is
        ``input_text``. Deleted oldest first, the input first: should a later delete fail,
        what is left is an answer without its question, never a question that a repeat of
        the turn would put in the conversation twice.

        True when the input is gone from the conversation (the caller may ask again with it);
        False when it is still there (not found where it should be, or its delete failed), and
        the caller must treat the turn's answer as the one given.
        """
        try:
            newest = await self.list_items(conversation_id, limit=DISCARD_LOOKBACK)
        except ModelError as exc:
            log.warning("could not read the conversation to take a turn back: %s", exc)
            return False
        start = None
        for index in range(len(newest) - 1, -1, -1):
            item = newest[index]
            if item.get("type") == "message" and item.get("role") == "user":
                if _content_text(item.get("content")) == input_text:
                    start = index
                break
        if start is None:
            log.warning("the turn to take back is not the newest in its conversation; kept")
            return False
        for position, item in enumerate(newest[start:]):
            try:
                await self._delete_item(conversation_id, str(item.get("id")))
            except ModelError as exc:
                if position == 0:
                    log.warning("could not take the turn's input back: %s", exc)
                    return False
                log.warning("an item of a taken-back turn stays in the conversation: %s", exc)
        return True

    async def _delete_item(self, conversation_id: str, item_id: str) -> None:
        """Delete one item (retried; one already gone, or in a conversation gone, counts as
        deleted: a retry after a lost answer finds it so)."""
        what = "conversations.items.delete"
        try:
            async for attempt in self._policy.retrying(retryable, what=what):
                with attempt, trio.fail_after(self._timeout):
                    await self._client.conversations.items.delete(
                        item_id, conversation_id=conversation_id
                    )
        except openai.NotFoundError:
            return
        except FAILURES as exc:
            raise model_error(exc) from exc

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
        try:
            async for attempt in self._policy.retrying(retryable, what="responses.create"):
                with attempt:
                    lock_deadline: float | None = None
                    while True:
                        if ambiguous:
                            recovered = await self._recover(conversation_id, input_items)
                            if recovered is not None:
                                return recovered
                        try:
                            with trio.fail_after(self._timeout):
                                return _reply(await self._client.responses.create(**params))
                        except FAILURES as exc:
                            if _locked(exc) and ambiguous:
                                # Locked right after an ambiguous failure: most likely our own
                                # earlier request is still running server-side. Wait for it
                                # (bounded by one more client timeout) without spending an
                                # attempt, then look for its answer instead of asking again.
                                now = trio.current_time()
                                lock_deadline = lock_deadline or now + self._timeout
                                if now < lock_deadline:
                                    await trio.sleep(min(lock_deadline - now, self._lock_poll(exc)))
                                    continue
                            ambiguous = ambiguous or retryable(exc) is not None
                            raise
        except FAILURES as exc:
            raise model_error(exc) from exc
        raise AssertionError("unreachable: the retry loop returns or raises")

    def _lock_poll(self, exc: BaseException) -> float:
        """How long to wait before looking again at a locked conversation (with jitter)."""
        hint = retryable(exc) or self._timeout / 10
        return min(max(hint, 0.05), 2.0) * random.uniform(0.5, 1.0)

    async def _recover(
        self, conversation_id: str, input_items: list[dict[str, Any]]
    ) -> ModelReply | None:
        """If a previous attempt did complete server-side, return its answer.

        A failure to look raises (and uses up an attempt): not knowing whether the input is
        already in the conversation is no reason to send it again.
        """
        wanted = _first_text(input_items)
        if wanted is None:
            return None
        try:
            with trio.fail_after(self._timeout):
                page = await self._client.conversations.items.list(
                    conversation_id, limit=20, order="desc"
                )
        except FAILURES as exc:
            log.warning("could not inspect conversation after an ambiguous failure: %r", exc)
            raise
        newer: list[dict[str, Any]] = []
        for item in page.data:
            data = item.model_dump()
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


def _reply(response: object) -> ModelReply:
    """A ``ModelReply`` from a ``Response``: its output text and function calls."""
    if not isinstance(response, Response):
        # The SDK hands back the body as text when a success is not JSON.
        raise ModelError("OpenAI answered responses.create with a body that is not JSON")
    calls: list[FunctionCall] = []
    citations: dict[str, Citation] = {}
    searched = False
    for item in response.output:
        if item.type == "function_call":
            if not isinstance(item.call_id, str) or not isinstance(item.name, str):
                raise ModelError("OpenAI returned a function call without call_id or name")
            calls.append(FunctionCall(item.call_id, item.name, item.arguments or "{}"))
        elif item.type == "file_search_call":
            searched = True
        elif item.type == "message":
            for part in item.content:
                for note in getattr(part, "annotations", None) or ():
                    if getattr(note, "type", None) == "file_citation":
                        citations.setdefault(note.file_id, Citation(note.file_id, note.filename))
    usage = response.usage
    return ModelReply(
        response_id=response.id,
        text=response.output_text,
        calls=tuple(calls),
        tokens=usage.total_tokens if usage is not None else None,
        searched=searched,
        citations=tuple(citations.values()),
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
