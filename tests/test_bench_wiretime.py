"""The turn-overhead benchmark's socket stamps (``bench/wiretime.py``) over a real loopback pair.

A request's stamp is its first byte read; the rest of its body read later must not restamp it,
or the next request on the connection would inherit a stale time (the fake's time then swells
and the overhead goes negative, as a first version did). Each read also carries the kernel's
receive time of what it returned, which must not move when the reader is late.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

from bench import wiretime


@asynccontextmanager
async def _pair() -> AsyncIterator[tuple[trio.SocketStream, wiretime.StampedStream]]:
    """A loopback connection: a plain client stream, the server side stamped; closed after."""
    wiretime.keep_stamping()
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    client = await trio.open_tcp_stream("127.0.0.1", port)
    server = wiretime.StampedStream(await listeners[0].accept())
    try:
        yield client, server
    finally:
        await client.aclose()
        await server.aclose()
        for listener in listeners:
            await listener.aclose()


async def _until_stamped(client: trio.SocketStream, server: wiretime.StampedStream) -> None:
    """The kernel switches stamping on asynchronously: wait until a segment carries a time."""
    with trio.fail_after(5):
        while server.arrived is None:
            await client.send_all(b"-")
            await _read(server, 1)
            await trio.sleep(0.001)


async def _read(stream: wiretime.StampedStream, size: int) -> None:
    got = 0
    while got < size:
        got += len(await stream.receive_some(size - got))


async def test_a_request_is_stamped_at_its_first_byte_and_only_once() -> None:
    async with _pair() as (client, server):
        before_first = trio.current_time()
        await client.send_all(b"POST / HTTP/1.1\r\n\r\n")
        await _read(server, 19)
        # Taken when the app is called, after the headers: before the body is read.
        first = server.take_request()
        assert first is not None
        assert before_first <= first < before_first + 0.015
        await trio.sleep(0.02)
        await client.send_all(b"body")  # the body in a second write, as httpcore sends it
        await _read(server, 4)
        assert server.take_request() is None  # the body did not start a request

        sent: list[float] = []
        server.on_sent = sent.append
        before_response = trio.current_time()
        await server.send_all(b"HTTP/1.1 200 OK\r\n\r\n")
        assert len(sent) == 1 and sent[0] >= before_response

        await trio.sleep(0.02)
        before_second = trio.current_time()
        await client.send_all(b"GET / HTTP/1.1\r\n\r\n")
        await _read(server, 18)
        second = server.take_request()
        assert second is not None and second >= before_second


async def test_requests_find_their_connection_by_client_address() -> None:
    async with _pair() as (client, server):
        await client.send_all(b"GET / HTTP/1.1\r\n\r\n")
        await _read(server, 18)
        host, port = client.socket.getsockname()[:2]
        wiretime.enter_request({"type": "http", "client": (host, port)})
        connection, first_byte = wiretime.current_request()
        assert connection is server and first_byte is not None
        wiretime.enter_request({"type": "http", "client": ("127.0.0.1", 1)})
        assert wiretime.current_request() == (None, None)


async def test_the_kernel_time_is_when_bytes_arrived_not_when_they_were_read() -> None:
    async with _pair() as (client, server):
        await _until_stamped(client, server)
        before = trio.current_time()
        await client.send_all(b"POST / HTTP/1.1\r\n\r\n")
        sent = trio.current_time()
        await trio.sleep(0.05)  # the load process busy elsewhere
        await _read(server, 19)
        read = trio.current_time()
        assert server.arrived is not None
        # The kernel's time converted to trio's: off by a preemption between two clock reads.
        assert before - 0.01 <= server.arrived <= sent + 0.01
        assert read - server.arrived >= 0.045

        # A body sent later: the latest read reports the later arrival (the request's end).
        await client.send_all(b"body")
        body_sent = trio.current_time()
        await trio.sleep(0.05)
        await _read(server, 4)
        assert server.arrived is not None
        assert sent + 0.04 <= server.arrived <= body_sent + 0.01


async def test_a_closed_stream_reads_as_closed() -> None:
    async with _pair() as (client, server):
        await client.send_all(b"x")
        await _read(server, 1)
        await client.aclose()
        assert await server.receive_some() == b""  # EOF, as trio's stream reports it
        server.socket.close()
        with pytest.raises(trio.ClosedResourceError):
            await server.receive_some()
