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

Those stamps lean against wabot: the load process's delay in reading a request's first byte
(its loop busy with other users) counts as wabot's. So each read also takes the kernel's
receive time of the data it returned (``SO_TIMESTAMPNS``; for TCP the kernel reports the last
segment the read consumed): ``arrived``, read by a handler once the request's body is in, is
when the request's last bytes reached the fake's socket — on loopback, the moment wabot's
send of them returned — however late the load process got round to reading them.

Installing swaps the ``TCPServer`` that ``hypercorn.trio`` serves each connection with for a
subclass that wraps the stream: a load-process-only hook, since hypercorn has no option for it.
"""

from __future__ import annotations

import contextvars
import errno
import socket
import struct
import time
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
#: Linux's ``SO_TIMESTAMPNS`` (the ``socket`` module does not name it): each received segment
#: carries its kernel receive time, reported as a ``struct timespec`` of CLOCK_REALTIME.
_SO_TIMESTAMPNS = 35
_TIMESPEC = struct.Struct("qq")
_ANCILLARY_SIZE = socket.CMSG_SPACE(_TIMESPEC.size)
_DEFAULT_RECEIVE_SIZE = 65536
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
        #: Kernel receive time (trio clock) of the data the latest read returned; None if the
        #: kernel gave none.
        self.arrived: float | None = None
        inner.socket.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        peer = inner.socket.getpeername()
        self.peer: tuple[str, int] = (peer[0], peer[1])
        _connections[self.peer] = self

    def __getattr__(self, name: str) -> Any:
        # ``socket``, ``send_eof``, ...; a missing ``do_handshake`` raises AttributeError as
        # hypercorn expects of a plain (non-TLS) stream.
        return getattr(self._inner, name)

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        # What ``trio.SocketStream.receive_some`` does, with ``recvmsg`` for the timestamp.
        size = _DEFAULT_RECEIVE_SIZE if max_bytes is None else max_bytes
        if size < 1:
            raise ValueError("max_bytes must be >= 1")
        try:
            data, ancillary, _flags, _address = await self._inner.socket.recvmsg(
                size, _ANCILLARY_SIZE
            )
        except OSError as exc:
            if exc.errno in (errno.EBADF, errno.ENOTSOCK):
                raise trio.ClosedResourceError("this socket was already closed") from None
            raise trio.BrokenResourceError(f"socket connection broken: {exc}") from exc
        if data:
            now = trio.current_time()
            self.arrived = _kernel_time(ancillary, now)
            if self._between_requests:
                self.first_read = now
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


def _kernel_time(ancillary: list[tuple[int, int, bytes]], now: float) -> float | None:
    """The receive time in ``ancillary`` on the trio clock (``now`` is the trio time of now).

    Converted by age: CLOCK_REALTIME now minus the stamp, taken back from ``now``; a clock
    step between the two readings is the only error, and an age below zero is read as zero.
    """
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(payload) >= 16:
            seconds, nanoseconds = _TIMESPEC.unpack_from(payload)
            age = time.clock_gettime(time.CLOCK_REALTIME) - (seconds + nanoseconds * 1e-9)
            return now - max(age, 0.0)
    return None


class _StampedTCPServer(TCPServer):
    def __init__(self, app: Any, config: Any, context: Any, state: Any, stream: Any) -> None:
        super().__init__(app, config, context, state, StampedStream(stream))


#: A socket that asks for receive times and stays open while the process lives (``install``).
_keep_stamping: list[socket.socket] = []


def keep_stamping() -> None:
    """Keep the kernel stamping received segments for the rest of this process.

    Linux stamps them only while some socket asks for it, and switches that on asynchronously:
    the first segments of a connection, queued before the connection is accepted and asks,
    would have no time. One socket asking for the process's lifetime keeps it on.
    """
    if not _keep_stamping:
        keeper = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        keeper.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        _keep_stamping.append(keeper)


def install() -> None:
    """Stamp every connection ``hypercorn.trio.serve`` accepts from now on, in this process."""
    keep_stamping()
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
