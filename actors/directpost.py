"""The JSON POSTs of every turn, handed straight to the HTTP client's transport.

A turn makes two POSTs: the model's ``responses`` call and Whapi's ``messages/text``. Through
``AsyncClient.send`` each also pays for what is the same at every turn or unused by wabot:
merging the base URL and the client's headers, the cookie jar, the auth and redirect flows,
event hooks, the elapsed timer. ``DirectPost`` merges headers once and hands each request to
the transport the client was built with, then reads and closes the response as the client
does (``response.request`` set, body read, stream closed).

Left out, and why that is safe for these calls: cookies (both APIs authenticate with a header
and wabot keeps no session); redirects (neither API redirects these POSTs; a 3xx would come
back as the response itself, which neither caller takes for a success); event hooks and auth
flows (wabot sets none). Saved: 0.2-0.3 ms of client CPU per Whapi send and 0.14 ms per
``responses`` call against the fakes (bench/RESULTS.md, turn overhead).

An httpx client given a transport ignores the proxies named in the environment, so the
transport is made here (``own_transport``) only when the environment names none; otherwise the
client builds its own, with the proxies, and every request takes the client's path.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Mapping
from types import ModuleType
from typing import Any


def own_transport(http: ModuleType, limits: Any) -> Any | None:
    """A transport for a new client and its ``DirectPost``; None when a proxy is configured.

    ``http`` is ``httpx`` or ``httpx2``. Build the client with ``transport=`` this (and
    ``limits=`` too: a client with no transport given builds its own with them).
    """
    if urllib.request.getproxies():
        return None
    return http.AsyncHTTPTransport(limits=limits)


class DirectPost:
    """POST bytes to ``base_url + path`` through ``transport`` (or ``client`` without one).

    For ``httpx`` and ``httpx2`` clients alike: ``http`` is the module (its ``Request`` and
    ``RequestError``), ``client`` the client built on ``transport`` (its headers are the
    defaults), ``timeout`` the module's ``Timeout`` for every request (default: the client's).
    """

    def __init__(
        self,
        http: ModuleType,
        client: Any,
        transport: Any | None,
        base_url: str,
        headers: Mapping[str, str] | None = None,
        timeout: Any = None,
    ) -> None:
        self._http = http
        self._client = client
        self._transport = transport
        self._base_url = base_url.rstrip("/")
        merged = client.headers.copy()
        merged.update(headers or {})
        merged["content-type"] = "application/json"
        self._headers = merged
        self._timeout = client.timeout if timeout is None else timeout
        self._extensions = {"timeout": self._timeout.as_dict()}

    @property
    def direct(self) -> bool:
        """Whether requests skip the client (False behind a proxy)."""
        return self._transport is not None

    async def post(self, path: str, content: bytes) -> Any:
        """The module's ``Response``, read and closed; its errors raise as the client's do."""
        url = self._base_url + path
        if self._transport is None:
            return await self._client.post(
                url, content=content, headers=self._headers, timeout=self._timeout
            )
        request = self._http.Request(
            "POST", url, content=content, headers=self._headers, extensions=self._extensions
        )
        try:
            response = await self._transport.handle_async_request(request)
        except self._http.RequestError as exc:
            exc.request = request  # as the client's request_context does
            raise
        response.request = request
        try:
            await response.aread()
        finally:
            await response.aclose()
        return response
