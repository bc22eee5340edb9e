"""The httpx client wabot talks to Whapi with: responses freed as soon as they are dropped.

``httpx.AsyncClient.send`` (httpx 0.28) wraps every response's stream in a ``BoundAsyncStream``
that holds the response (to set ``elapsed`` on close), and the response holds the stream: a
reference cycle. Reference counting cannot free a cycle, so every response, with its request,
headers, URLs and the transport's stream objects (about forty objects), waits for the cycle
collector; many survive into the old generation and are freed only by a full collection. In
the soak benchmark that was most of the cyclic garbage, and full collections took 0.2 s.
(``httpx2``, under the OpenAI SDK, keeps ``elapsed`` on the stream and has no such cycle.)

Once a response has been read to the end and closed (every ``send`` without ``stream=True``),
its stream has nothing left to give: this client swaps it for an empty one, which breaks the
cycle. ``content``, ``text``, ``json()``, ``elapsed`` and the iterators over the read body work
as before. Streamed responses (``stream=True``) are left alone.
"""

from __future__ import annotations

from typing import Any

import httpx

#: Read-and-closed responses get this stream; it holds nothing and can be shared.
_EMPTY = httpx.ByteStream(b"")


class AcyclicAsyncClient(httpx.AsyncClient):
    """``httpx.AsyncClient`` whose read responses do not hold themselves (module docstring)."""

    async def send(
        self, request: httpx.Request, *, stream: bool = False, **kwargs: Any
    ) -> httpx.Response:
        response = await super().send(request, stream=stream, **kwargs)
        if not stream and response.is_closed:
            response.stream = _EMPTY
        return response
