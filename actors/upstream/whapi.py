"""Whapi.Cloud REST client: sends, presence, chats, history, media.

Every call carries ``Authorization: Bearer <token>`` and goes through one plain
``httpx.AsyncClient``. ``retryable`` is Whapi's one rule of which failures get another attempt
(429 honouring ``Retry-After``, 5xx, network errors), for sends and reads alike, with bounded
backoff; presence updates are best effort and tried once. Whapi takes no idempotency key, so
before re-sending after an *ambiguous* failure (a timeout or a 5xx after the request reached
Whapi) the client looks at the chat's recent messages and, if the text is already there, takes
that as sent: a customer never gets the same answer twice because of a retry. After a *timeout*
the history is polled for one more client timeout before a re-send, so a request Whapi was
still holding when the client gave up is found once it lands.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import attrs
import httpx
import trio

from actors.upstream.poolwait import PoolWaits
from actors.upstream.retry import RetryPolicy, UpstreamHTTPError, http_retryable, parse_retry_after

log = logging.getLogger("actors.upstream.whapi")


class WhapiError(UpstreamHTTPError):
    """Whapi answered with an error, or could not be reached within the attempts allowed."""


#: Whapi's retryable failures (a ``retry`` classifier): 429, 5xx, dropped connections.
retryable = http_retryable


def checked(response: httpx.Response) -> httpx.Response:
    """``response`` if it is a success; a ``WhapiError`` with its status otherwise."""
    if response.status_code >= 400:
        raise WhapiError(
            _error_text(response),
            status=response.status_code,
            retry_after=parse_retry_after(response.headers.get("retry-after")),
        )
    return response


@attrs.frozen
class SentMessage:
    message_id: str
    verified_by_history: bool = False


def _path_id(value: str) -> str:
    return quote(value, safe="@.")


class WhapiClient:
    """One client per process; owns its ``httpx.AsyncClient`` (close it with ``aclose``)."""

    def __init__(
        self,
        *,
        base_url: str,
        token: str,
        timeout: float,
        policy: RetryPolicy,
        transport: httpx.AsyncBaseTransport | None = None,
        pool_size: int = 32,
        keepalive_size: int = 8,
        on_pool_wait: Callable[[float], None] | None = None,
    ) -> None:
        self._timeout = timeout
        self._policy = policy
        hooks = {"request": [PoolWaits(on_pool_wait).on_request]} if on_pool_wait else {}
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            # A small pool: httpcore probes every idle pooled connection on each request.
            limits=httpx.Limits(
                max_connections=pool_size,
                max_keepalive_connections=min(keepalive_size, pool_size),
            ),
            transport=transport,
            event_hooks=hooks,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> WhapiClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- sends -------------------------------------------------------------------------------

    async def send_text(
        self, to: str, body: str, *, typing_time: float | None = None
    ) -> SentMessage:
        payload: dict[str, Any] = {"to": to, "body": body}
        if typing_time is not None and typing_time > 0:
            payload["typing_time"] = round(typing_time, 1)
        return await self._send("/messages/text", payload, to=to, verify_text=body)

    async def send_voice(self, to: str, media: str, *, seconds: float | None = None) -> SentMessage:
        payload: dict[str, Any] = {"to": to, "media": media, "mime_type": "audio/ogg; codecs=opus"}
        if seconds:
            payload["seconds"] = max(1, round(seconds))
        return await self._send("/messages/voice", payload, to=to, verify_text=None)

    async def _send(
        self, path: str, payload: dict[str, Any], *, to: str, verify_text: str | None
    ) -> SentMessage:
        started = time.time()
        ambiguous = False
        #: The last attempt timed out: Whapi may still be holding it (wait for it to land).
        in_flight = False
        try:
            async for attempt in self._policy.retrying(retryable, what=f"POST {path}"):
                with attempt:
                    if ambiguous and verify_text is not None:
                        since = started - 5
                        found = await (
                            self._await_sent(to, verify_text, since=since)
                            if in_flight
                            else self._find_sent(to, verify_text, since=since)
                        )
                        if found is not None:
                            log.info(
                                "send to %s was delivered despite the error; not re-sending", to
                            )
                            return SentMessage(found, verified_by_history=True)
                    in_flight = False
                    try:
                        response = checked(await self._http.post(path, json=payload))
                    except httpx.TimeoutException:
                        ambiguous = in_flight = True
                        raise
                    except httpx.TransportError as exc:
                        # A refused connection never reached Whapi; other network errors may.
                        ambiguous = ambiguous or not isinstance(exc, httpx.ConnectError)
                        raise
                    except WhapiError as exc:
                        ambiguous = ambiguous or (exc.status or 0) >= 500
                        raise
                    data = _json(response)
                    message = data.get("message") if isinstance(data, dict) else None
                    message_id = message.get("id") if isinstance(message, dict) else None
                    if not isinstance(message_id, str):
                        raise WhapiError(f"{path}: response without message id")
                    return SentMessage(message_id)
        except httpx.HTTPError as exc:
            raise WhapiError(f"POST {path}: {exc!r}") from exc
        raise AssertionError("unreachable: the retry loop returns or raises")

    async def _await_sent(self, chat_id: str, text: str, *, since: float) -> str | None:
        """Look for an ambiguous send in the chat's history for up to one client timeout.

        A request Whapi was still holding when our client gave up may land a moment later;
        re-sending at once would then deliver the message twice. Polling the history for one
        more timeout catches that case; only after it is the send repeated.
        """
        deadline = trio.current_time() + self._timeout
        while True:
            found = await self._find_sent(chat_id, text, since=since)
            remaining = deadline - trio.current_time()
            if found is not None or remaining <= 0:
                return found
            await trio.sleep(min(remaining, max(self._timeout / 8, 0.05)))

    async def _find_sent(self, chat_id: str, text: str, *, since: float) -> str | None:
        try:
            return await self.find_sent(chat_id, text=text, since=since)
        except WhapiError as exc:
            log.warning("could not verify an ambiguous send to %s: %s", chat_id, exc)
            return None

    async def find_sent(
        self, chat_id: str, *, text: str | None, since: float, kind: str = "text"
    ) -> str | None:
        """The id of a message we sent to ``chat_id`` at or after ``since`` (Unix time), of
        ``kind`` and, for text, with body ``text``; None when the chat's history has none."""
        for message in await self.list_messages(chat_id, count=20):
            if not isinstance(message, dict):
                continue
            body = message.get("text", {}).get("body") if kind == "text" else None
            stamp = message.get("timestamp", 0)
            if (
                message.get("from_me") is True
                and message.get("type") == kind
                and body == text
                and isinstance(stamp, int | float)
                and stamp >= since
                and isinstance(message.get("id"), str)
            ):
                return str(message["id"])
        return None

    # -- presence ----------------------------------------------------------------------------

    async def set_presence(self, chat_id: str, presence: str) -> bool:
        """Show ``typing``/``recording``/``paused`` in a chat; best effort, one try."""
        try:
            with trio.fail_after(self._timeout):
                response = await self._http.put(
                    f"/presences/{_path_id(chat_id)}", json={"presence": presence}
                )
        except (httpx.HTTPError, trio.TooSlowError) as exc:
            log.debug("presence %s for %s failed: %r", presence, chat_id, exc)
            return False
        return response.status_code < 400

    async def subscribe_presence(self, user_id: str) -> bool:
        """Ask Whapi to deliver this contact's presence; 200 and 409 (already) both count."""
        try:
            with trio.fail_after(self._timeout):
                response = await self._http.post(f"/presences/{_path_id(user_id)}")
        except (httpx.HTTPError, trio.TooSlowError) as exc:
            log.info("presence subscription for %s failed: %r", user_id, exc)
            return False
        return response.status_code < 400 or response.status_code == 409

    async def assign_label(self, label_id: str, chat_id: str) -> None:
        """Put a WhatsApp Business label on a chat (``POST /labels/{label}/{chat}``)."""
        await self._idempotent("POST", f"/labels/{_path_id(label_id)}/{_path_id(chat_id)}")

    # -- reads -------------------------------------------------------------------------------

    async def _get_json(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return _json(await self._idempotent("GET", path, params=params))

    async def _idempotent(
        self, method: str, path: str, params: dict[str, Any] | None = None
    ) -> httpx.Response:
        """A call safe to repeat, retried by ``retryable``; other errors raise ``WhapiError``."""
        try:
            async for attempt in self._policy.retrying(retryable, what=f"{method} {path}"):
                with attempt:
                    return checked(await self._http.request(method, path, params=params))
        except httpx.HTTPError as exc:
            raise WhapiError(f"{method} {path}: {exc!r}") from exc
        raise AssertionError("unreachable: the retry loop returns or raises")

    async def get_chat(self, chat_id: str) -> dict[str, Any] | None:
        try:
            data = await self._get_json(f"/chats/{_path_id(chat_id)}")
        except WhapiError as exc:
            if exc.status == 404:
                return None
            raise
        return data if isinstance(data, dict) else None

    async def list_messages(self, chat_id: str, *, count: int = 20) -> list[dict[str, Any]]:
        data = await self._get_json(f"/messages/list/{_path_id(chat_id)}", {"count": count})
        messages = data.get("messages") if isinstance(data, dict) else None
        return [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise WhapiError(f"invalid JSON from Whapi (HTTP {response.status_code})") from exc


def _error_text(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return f"HTTP {response.status_code}: {error['message']}"
    return f"HTTP {response.status_code}"
