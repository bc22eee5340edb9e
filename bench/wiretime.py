"""When the fakes' requests reach the wire: stamps taken at the fakes' sockets, not in handlers.

The turn-overhead benchmark subtracts the time a turn spends inside the fakes. A handler's own
start and end leave out what the fakes' HTTP server does around it (reading and parsing the
request, spawning the request's task, writing the response) and the time the request waits in
the load process's queue behind other users' work: 2-3 ms per turn at p50 and 4-7 ms at p99
(bench/RESULTS.md), counted as wabot's. With ``install()`` every connection the fakes accept is a
``StampedStream``, which records when the first byte of each request was read and calls back
with the time response bytes were handed to the socket; a handler finds its connection by the
ASGI ``client`` address (``enter_request``, ``current_request``) and can then count:

- for a reply received by the fake Whapi, the time its first byte was read;
- for an OpenAI call, from its first byte read to its response's last bytes handed to the
  socket.

Both stamps lean against wabot: the load process's delay in reading a request's first byte
(its loop busy with other users) and the write of a response's last bytes count as wabot's.

Installing swaps the ``TCPServer`` that ``hypercorn.trio`` serves each connection with for a
subclass that wraps the stream: a load-process-only hook, since hypercorn has no option for it.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import Any

import hypercorn.trio.run
import trio
from hypercorn.trio.tcp_server import TCPServer

#: Called with the time (trio clock) response bytes were handed to the socket.
OnSent = Callable[[float], None]

#: The connection and first-byte time of the request being handled (set by ``enter_request``).
_request: contextvars.ContextVar[tuple[StampedStream | None, float | None]] = (
    contextvars.ContextVar("wiretime_request", default=(None, None))
)
#: Open stamped connections by peer address (host, port).
_connections: dict[tuple[str, int], StampedStream] = {}


class StampedStream:
    """A ``trio.SocketStream`` that notes its reads' and writes' times (module docstring)."""

    def __init__(self, inner: trio.SocketStream) -> None:
        self._inner = inner
        #: When the first byte of the connection's current request was read.
        self.first_read: float | None = None
        #: The next byte read starts a request: nothing read yet, or response bytes went out
        #: since (HTTP/1.1 without pipelining: a client sends its next request only after the
        #: response; a body read after its headers is not a new request).
        self._between_requests = True
        self.on_sent: OnSent | None = None
        peer = inner.socket.getpeername()
        self.peer: tuple[str, int] = (peer[0], peer[1])
        _connections[self.peer] = self

    def __getattr__(self, name: str) -> Any:
        # ``socket``, ``send_eof``, ...; a missing ``do_handshake`` raises AttributeError as
        # hypercorn expects of a plain (non-TLS) stream.
        return getattr(self._inner, name)

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        data = await self._inner.receive_some(max_bytes)
        if data and self._between_requests:
            self.first_read = trio.current_time()
            self._between_requests = False
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        # Stamped before the write: the write itself, and this task's wait to be scheduled
        # again after it, count as wabot's time.
        handed = trio.current_time()
        self._between_requests = True
        await self._inner.send_all(data)
        if self.on_sent is not None:
            self.on_sent(handed)

    def take_request(self) -> float | None:
        """The current request's first-byte time (once per request; None the second time)."""
        first, self.first_read = self.first_read, None
        self.on_sent = None
        return first

    async def aclose(self) -> None:
        if _connections.get(self.peer) is self:
            del _connections[self.peer]
        await self._inner.aclose()


class _StampedTCPServer(TCPServer):
    def __init__(self, app: Any, config: Any, context: Any, state: Any, stream: Any) -> None:
        super().__init__(app, config, context, state, StampedStream(stream))


def install() -> None:
    """Stamp every connection ``hypercorn.trio.serve`` accepts from now on, in this process."""
    hypercorn.trio.run.TCPServer = _StampedTCPServer  # type: ignore[misc]


def enter_request(scope: Any) -> None:
    """Take the request's first-byte stamp from its connection (found by the ASGI ``client``).

    Call it at the top of the ASGI app for every HTTP request, answered or not, so a stamp
    never carries over to the connection's next request.
    """
    client = scope.get("client")
    connection = _connections.get((client[0], client[1])) if client else None
    first_byte = connection.take_request() if connection is not None else None
    _request.set((connection, first_byte))


def current_request() -> tuple[StampedStream | None, float | None]:
    """The connection the request being handled arrived on and its first byte's time.

    ``(None, None)`` when the connection is not stamped (``install`` not called).
    """
    return _request.get()
