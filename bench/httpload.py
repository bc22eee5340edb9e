"""A small HTTP/1.1 keep-alive client on raw trio sockets, and an open-loop request scheduler.

Used by the load process (``bench.loadgen``), never by wabot. Raw sockets instead of httpx:
the load generator must cost far less CPU per request than the server it measures (httpx
spends about a millisecond of CPU per request; this client tens of microseconds).

``open_loop`` sends requests at a fixed arrival rate: request *i* is due at
``start + i / rate`` whether or not earlier ones have been answered (no coordinated
omission, as in wrk2); latency is measured from that intended send time, so a server stall
shows up as the queueing it causes. Every run is bounded in count and in time.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import attrs
import trio

#: Connections idle longer than this are reopened before use (hypercorn closes idle
#: keep-alive connections after ``keep_alive_timeout`` = 5 s in wabot's config).
STALE_SECONDS = 4.0


class HTTPError(Exception):
    """The connection failed or the response could not be parsed."""


class Conn:
    """One keep-alive connection; requests on it are sequential."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._stream: trio.SocketStream | None = None
        self._buf = bytearray()
        self._last_used = 0.0

    async def _ensure(self) -> None:
        now = trio.current_time()
        if self._stream is not None and now - self._last_used > STALE_SECONDS:
            await self.aclose()
        if self._stream is None:
            self._stream = await trio.open_tcp_stream(self.host, self.port)
            self._buf.clear()

    async def aclose(self) -> None:
        if self._stream is not None:
            stream, self._stream = self._stream, None
            with trio.CancelScope(shield=True):
                await stream.aclose()

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        """Send one complete request; return (status, body). Raises ``HTTPError``."""
        await self._ensure()
        assert self._stream is not None
        try:
            await self._stream.send_all(raw)
            status, body, close = await self._read_response()
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError, HTTPError) as exc:
            await self.aclose()
            raise HTTPError(f"{type(exc).__name__}: {exc}") from None
        self._last_used = trio.current_time()
        if close:
            await self.aclose()
        return status, body

    async def _read_response(self) -> tuple[int, bytes, bool]:
        assert self._stream is not None
        buf = self._buf
        while True:
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            await self._fill()
        head = bytes(buf[:end]).decode("latin-1").split("\r\n")
        parts = head[0].split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            raise HTTPError(f"bad status line {head[0]!r}")
        status = int(parts[1])
        length = 0
        close = False
        for line in head[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value.strip())
            elif name == "connection" and value.strip().lower() == "close":
                close = True
            elif name == "transfer-encoding":
                raise HTTPError("chunked responses are not supported by this client")
        need = end + 4 + length
        while len(buf) < need:
            await self._fill()
        body = bytes(buf[end + 4 : need])
        del buf[:need]
        return status, body, close

    async def _fill(self) -> None:
        assert self._stream is not None
        chunk = await self._stream.receive_some(65536)
        if not chunk:
            raise HTTPError("connection closed by the server")
        self._buf += chunk


def build_request(method: str, host: str, path: str, body: bytes = b"", **headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    if body or method in {"POST", "PUT"}:
        lines.append("Content-Type: application/json")
        lines.append(f"Content-Length: {len(body)}")
    lines.extend(f"{name.replace('_', '-')}: {value}" for name, value in headers.items())
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (exact; no histogram bucketing)."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def latency_summary(latencies: list[float]) -> dict[str, float]:
    """p50/p90/p99/p99.9/max in milliseconds (exact percentiles over all samples)."""
    ordered = sorted(latencies)
    out = {
        f"p{label}_ms": round(percentile(ordered, q) * 1e3, 2)
        for label, q in (("50", 0.5), ("90", 0.9), ("99", 0.99), ("99.9", 0.999))
    }
    out["max_ms"] = round(ordered[-1] * 1e3, 2) if ordered else math.nan
    out["mean_ms"] = round(sum(ordered) / len(ordered) * 1e3, 2) if ordered else math.nan
    out["samples"] = len(ordered)
    return out


@attrs.define
class OpenLoopResult:
    target_rate: float
    scheduled: int
    completed: int
    ok: int
    non_2xx: int
    socket_errors: int
    unfinished: int
    elapsed_seconds: float
    latencies: list[float] = attrs.field(repr=False, factory=list)
    statuses: dict[int, int] = attrs.Factory(dict)
    #: Requests scheduled late because the generator itself fell behind (should be ~0).
    generator_lag_max_ms: float = 0.0

    def summary(self) -> dict[str, Any]:
        sent_window = self.elapsed_seconds or math.nan
        return {
            "target_rate": self.target_rate,
            "achieved_rate": round(self.completed / sent_window, 1),
            "scheduled": self.scheduled,
            "completed": self.completed,
            "ok": self.ok,
            "non_2xx": self.non_2xx,
            "socket_errors": self.socket_errors,
            "unfinished": self.unfinished,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "generator_lag_max_ms": round(self.generator_lag_max_ms, 2),
            "latency": latency_summary(self.latencies),
        }


async def open_loop(
    host: str,
    port: int,
    make_request: Callable[[int], bytes],
    *,
    rate: float,
    count: int,
    max_seconds: float,
    connections: int = 64,
    drain_seconds: float = 10.0,
    schedule: list[float] | None = None,
    on_done: Callable[[int, int, float], None] | None = None,
    warmup_seconds: float = 0.0,
) -> OpenLoopResult:
    """Send ``count`` requests at ``rate``/s (or at the offsets in ``schedule``).

    Scheduling stops after ``max_seconds``; requests still unanswered ``drain_seconds`` after
    the last one was due count as ``unfinished``. Latencies of requests due in the first
    ``warmup_seconds`` (connection setup) are not recorded. ``on_done(i, status, finished_at)``
    is called for every answered request (status 0: socket error).
    """
    result = OpenLoopResult(
        target_rate=rate,
        scheduled=0,
        completed=0,
        ok=0,
        non_2xx=0,
        socket_errors=0,
        unfinished=0,
        elapsed_seconds=0.0,
    )
    send, receive = trio.open_memory_channel[tuple[int, float]](max(1, count))
    start = trio.current_time() + 0.05
    in_flight = 0
    last_done = start

    async def worker() -> None:
        nonlocal in_flight, last_done
        conn = Conn(host, port)
        try:
            async for index, intended in receive:
                in_flight += 1
                try:
                    status, _body = await conn.request(make_request(index))
                except HTTPError:
                    status = 0
                done = trio.current_time()
                in_flight -= 1
                last_done = max(last_done, done)
                result.completed += status != 0
                if status == 0:
                    result.socket_errors += 1
                else:
                    result.statuses[status] = result.statuses.get(status, 0) + 1
                    if 200 <= status < 300:
                        result.ok += 1
                    else:
                        result.non_2xx += 1
                if intended >= start + warmup_seconds:
                    result.latencies.append(done - intended)
                if on_done is not None:
                    on_done(index, status, done)
        finally:
            await conn.aclose()

    async with trio.open_nursery() as nursery:
        for _ in range(connections):
            nursery.start_soon(worker)
        last_due = start
        async with send:
            for index in range(count):
                offset = schedule[index] if schedule is not None else index / rate
                if offset > max_seconds:
                    break
                due = start + offset
                await trio.sleep_until(due)
                lag = trio.current_time() - due
                result.generator_lag_max_ms = max(result.generator_lag_max_ms, lag * 1e3)
                send.send_nowait((index, due))
                result.scheduled += 1
                last_due = due
        with trio.move_on_at(last_due + drain_seconds):
            while result.completed + result.socket_errors < result.scheduled:
                await trio.sleep(0.01)
        result.unfinished = result.scheduled - result.completed - result.socket_errors
        nursery.cancel_scope.cancel()
    result.elapsed_seconds = max(last_due, last_done) - start
    return result


async def closed_loop(
    host: str,
    port: int,
    make_request: Callable[[int], bytes],
    *,
    count: int,
    concurrency: int,
    max_seconds: float,
) -> tuple[int, int, float, list[int]]:
    """Send ``count`` requests with ``concurrency`` in flight; (ok, errors, seconds, failed)."""
    counter = iter(range(count))
    ok = errors = 0
    failed: list[int] = []
    started = trio.current_time()

    async def worker() -> None:
        nonlocal ok, errors
        conn = Conn(host, port)
        try:
            for index in counter:
                try:
                    status, _ = await conn.request(make_request(index))
                except HTTPError:
                    status = 0
                if status == 200:
                    ok += 1
                else:
                    errors += 1
                    failed.append(index)
        finally:
            await conn.aclose()

    with trio.move_on_after(max_seconds):
        async with trio.open_nursery() as nursery:
            for _ in range(concurrency):
                nursery.start_soon(worker)
    return ok, errors, trio.current_time() - started, failed
