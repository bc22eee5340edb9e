"""``POST /hook`` as a bare ASGI endpoint in front of the quart-trio app.

The webhook is the one path every customer message and every echo of wabot's own replies
takes, at hundreds per second; everything else (health, metrics, admin, audio) is rare and
stays with Quart. It stays a bare endpoint because the same webhook as a plain Quart route
misses the ingest target of 80 % of the bare quart-trio endpoint (bench/RESULTS.md, "Issue 20:
/hook, Quart route or bare endpoint"). It reads the body itself and answers with the statuses
and JSON bodies of a Quart route:

- 401 ``unauthorized`` when ``WABOT_WEBHOOK_SECRET`` is set and ``X-Webhook-Secret`` differs
  (constant-time comparison; the body is not read), logged once with the reason;
- 503 while draining or before the gateway is up (Whapi retries);
- 503 with ``Retry-After`` when the process cannot keep up (``gateway.overload``), before the
  body is read;
- 413 when ``Content-Length`` or the body read so far exceeds ``WABOT_MAX_BODY_BYTES``;
- 408 when the body does not arrive within ``BODY_TIMEOUT_SECONDS``;
- 400 for a body that is not JSON;
- otherwise whatever the gateway decides (200, or 503 when the inbox cannot be written).

Any other method on ``/hook`` gets 405. A body over ``OFFLOAD_BYTES`` is decoded and parsed in
a worker thread, at most ``OFFLOAD_THREADS`` at once (their own limiter, not trio's default
one), so that a flood of big bodies does not stall the event loop; smaller ones, nearly every
webhook, are decoded on the loop, where a thread would cost more than the decoding.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import trio

from gateway.app import SECRET_HEADER, secrets_match
from gateway.gateway import Gateway
from gateway.logs import log_refusal
from gateway.overload import RETRY_AFTER_SECONDS
from gateway.parse import ParsedWebhook
from gateway.service import Service

log = logging.getLogger("gateway.hook")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: How long the whole body may take to arrive (Quart's ``BODY_TIMEOUT`` for this route).
BODY_TIMEOUT_SECONDS = 30.0
#: Bodies larger than this are decoded and parsed in a worker thread, not on the event loop.
OFFLOAD_BYTES = 64 * 1024
#: At most this many big bodies are decoded at once; a flood of them waits for its turn.
OFFLOAD_THREADS = 2

_SECRET = SECRET_HEADER.lower().encode("latin-1")
_RETRY_AFTER = [(b"retry-after", str(RETRY_AFTER_SECONDS).encode("ascii"))]


class _TooLarge(Exception):
    pass


class _Disconnected(Exception):
    pass


class HookEndpoint:
    """ASGI app: ``POST /hook`` handled here, every other request passed to ``app``."""

    def __init__(
        self, service: Service, app: ASGIApp, *, body_timeout: float = BODY_TIMEOUT_SECONDS
    ) -> None:
        self.service = service
        self.app = app
        self.body_timeout = body_timeout
        self.max_body = service.settings.max_body_bytes
        self.secret = service.settings.webhook_secret or None
        self.big_bodies = trio.CapacityLimiter(OFFLOAD_THREADS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/hook":
            if scope["method"] == "POST":
                await self._hook(scope, receive, send)
            else:
                await _answer(send, 405, b'{"error":"method not allowed"}', [(b"allow", b"POST")])
        else:
            await self.app(scope, receive, send)

    async def _hook(self, scope: Scope, receive: Receive, send: Send) -> None:
        service = self.service
        length: int | None = None
        given: str | None = None
        for name, value in scope["headers"]:
            if name == _SECRET:
                given = value.decode("latin-1")
            elif name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    length = None
        if self.secret is not None and not secrets_match(given, self.secret):
            service.reject("unauthorized")
            client = scope.get("client")
            log_refusal(
                log,
                status=401,
                method="POST",
                path="/hook",
                client=client[0] if client else None,
                why=f"the {SECRET_HEADER} header is missing"
                if given is None
                else f"the {SECRET_HEADER} header does not match WABOT_WEBHOOK_SECRET",
            )
            await _answer(send, 401, b'{"error":"unauthorized"}')
            return
        gateway = service.gateway
        if service.draining or gateway is None:
            service.reject("draining")
            await _answer(send, 503, b'{"error":"not ready, retry later"}')
            return
        if length is not None and length > self.max_body:
            service.reject("too_large")
            await _answer(send, 413, b'{"error":"body too large"}')
            return
        overload = service.overload
        if overload.reason() is not None:
            service.reject("overloaded")
            await _answer(send, 503, b'{"error":"overloaded, retry later"}', _RETRY_AFTER)
            return
        overload.pending += 1
        try:
            await self._take(gateway, receive, send)
        finally:
            overload.pending -= 1

    async def _take(self, gateway: Gateway, receive: Receive, send: Send) -> None:
        """Read, parse and accept one webhook whose request was let in."""
        service = self.service
        try:
            with trio.fail_after(self.body_timeout):
                raw = await _read_body(receive, self.max_body)
        except _TooLarge:
            service.reject("too_large")
            await _answer(send, 413, b'{"error":"body too large"}')
            return
        except trio.TooSlowError:
            service.reject("body_timeout")
            await _answer(send, 408, b'{"error":"request body timed out"}')
            return
        except _Disconnected:
            return  # nobody to answer; nothing was journaled
        try:
            if len(raw) <= OFFLOAD_BYTES:
                parsed = gateway.parse(json.loads(raw))
            else:
                parsed = await trio.to_thread.run_sync(
                    _decode_and_parse, gateway.parse, raw, limiter=self.big_bodies
                )
        except (ValueError, UnicodeDecodeError, RecursionError):
            service.reject("malformed")
            await _answer(send, 400, b'{"error":"malformed JSON"}')
            return
        outcome = await gateway.accept(parsed)
        await _answer(
            send, outcome.status, json.dumps(outcome.body, separators=(",", ":")).encode()
        )


def _decode_and_parse(
    parse: Callable[[Any], ParsedWebhook | None], raw: bytes
) -> ParsedWebhook | None:
    # The object hook is a Python call per JSON object: without one the decoder, C code, holds
    # the GIL from the body's first byte to its last, and the event loop's thread waits.
    return parse(json.loads(raw, object_hook=_same))


def _same(value: dict[str, Any]) -> dict[str, Any]:
    return value


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise _TooLarge
            chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _answer(
    send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode("ascii")),
    ]
    if extra:
        headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
