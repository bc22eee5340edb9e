"""How long each request waited for a connection of its client's pool.

An upstream client's pool is bounded (``WABOT_HTTP_POOL_SIZE``); when every connection is busy,
a request waits inside httpcore for one to free up, and that wait is invisible in the call's
total latency. ``PoolWaits`` measures it through the two extension points httpx and httpcore
document: an httpx ``request`` event hook stamps the request and installs httpcore's ``trace``
extension on it, and the trace reports when the request got a connection (the start of a new
connection's TCP connect, or of sending its headers on a reused one). The wait is handed to
``observe`` (a histogram's ``observe``) once per request. The same class serves the SDK's
``httpx2`` client and the Whapi client's ``httpx`` one, whose hooks and traces are alike.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio

#: Trace events after which a request holds a connection (httpcore's names, any protocol).
_GOT_CONNECTION = (
    "connect_tcp.started",
    "connect_unix_socket.started",
    "send_request_headers.started",
)


class PoolWaits:
    """``event_hooks={"request": [waits.on_request]}`` on a client times its pool waits."""

    def __init__(self, observe: Callable[[float], None]) -> None:
        self._observe = observe

    async def on_request(self, request: Any) -> None:
        started = trio.current_time()
        pending = True

        async def trace(name: str, info: dict[str, Any]) -> None:
            nonlocal pending
            if pending and name.endswith(_GOT_CONNECTION):
                pending = False
                self._observe(trio.current_time() - started)

        request.extensions["trace"] = trace
