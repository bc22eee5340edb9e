"""The load process: loopback fakes of Whapi and OpenAI plus the load generators, one process.

``python -m bench.loadgen`` starts a ``FakeWhapi`` and a ``FakeOpenAI`` (zero latency, echo
webhooks off unless asked), prints one JSON line ``{"event": "fakes", ...}`` with their URLs
and tokens, then reads commands as JSON lines on stdin and answers each with one JSON line on
stdout (``{"event": "result", ...}``). The benchmark runner drives it; wabot runs in another
process and talks to the fakes over loopback.

The fakes run in this process's trio clock, so the times they record are directly comparable
with the generator's send times: that is how the turn-overhead benchmark subtracts the time
spent inside the fakes. ``TimedWhapi``/``TimedOpenAI`` add what the base fakes do not keep:
when each reply arrived and how long each user's OpenAI calls took, both taken at the fakes'
sockets (``bench.wiretime``), and replies per user.

Commands: ``openloop``, ``closed``, ``turns``, ``round``, ``flood``, ``soak``, ``customers``
(``bench.campaign_load``), ``replies``, ``metrics``, ``realism`` (the fakes' latencies and rate
limits, ``sandbox.realism``; zero latency until asked), ``reset``, ``quit``. Every loop is
bounded in count and time.

The commands that make load run on a frozen heap (``_quiet_collector``): this process keeps
what the fakes record (calls, conversations) across commands, and a full collection walking all
of it stopped the fakes and the generators for 50-160 ms in the middle of a measurement, time
every turn in flight then counted as wabot's overhead.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import random
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import attrs
import trio

from actors.upstream.model import safety_identifier
from bench import campaign_load, wiretime
from bench.httpload import (
    Conn,
    HTTPError,
    build_request,
    closed_loop,
    latency_summary,
    open_loop,
)
from sandbox.base import Request, Response
from sandbox.openai import FakeOpenAI
from sandbox.realism import Realism
from sandbox.whapi import FakeWhapi

WHAPI_TOKEN = "bench-whapi-token"
OPENAI_KEY = "sk-bench-openai-key"
USER_BASE = 573_100_000_000
TEXTS = (
    "Hola, buenas tardes",
    "Quisiera saber el precio del plan mensual y si tienen envío a Medellín",
    "¿Tienen disponibilidad para mañana en la mañana?",
    "Gracias!",
    "Me llegó el pedido incompleto, faltan dos unidades del producto que compré el lunes",
    "ok",
)


def user_id(index: int, base: int = USER_BASE) -> str:
    return str(base + index)


def message_id() -> str:
    raw = uuid.uuid4().hex.upper()
    return f"{raw[:20]}-{raw[20:28]}"


def text_webhook(user: str, text: str, mid: str | None = None) -> tuple[str, bytes]:
    """A realistic Whapi ``messages`` webhook with one text message; (message id, body)."""
    mid = mid or message_id()
    body = {
        "messages": [
            {
                "id": mid,
                "from_me": False,
                "type": "text",
                "chat_id": f"{user}@s.whatsapp.net",
                "timestamp": int(time.time()),
                "source": "mobile",
                "from": user,
                "from_name": "Cliente Bench",
                "text": {"body": text},
            }
        ],
        "event": {"type": "messages", "event": "post"},
        "channel_id": "BENCH-CHANNEL",
    }
    return mid, json.dumps(body, ensure_ascii=False).encode()


def presence_webhook(user: str, status: str) -> bytes:
    body = {
        "presences": [{"contact_id": user, "status": status}],
        "event": {"type": "presences", "event": "post"},
        "channel_id": "BENCH-CHANNEL",
    }
    return json.dumps(body).encode()


class _WireStamped:
    """Mixin for a fake: take each request's socket stamps (``bench.wiretime``).

    ``unstamped`` counts requests that lacked one (the handler's time, or the first-byte read,
    is used instead): 0 unless the hook broke.
    """

    unstamped = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        wiretime.enter_request(scope)
        await super().__call__(scope, receive, send)  # type: ignore[misc]

    def _stamp(self) -> tuple[wiretime.StampedStream | None, float | None, float | None]:
        """The request's connection, first-byte read time and kernel arrival time.

        Called from a handler, so after the request's body was read: the connection's latest
        kernel time is that of the request's last bytes.
        """
        connection, first_byte = wiretime.current_request()
        arrived = connection.arrived if connection is not None else None
        if first_byte is None or arrived is None:
            self.unstamped += 1
        return connection, first_byte, arrived


class TimedWhapi(_WireStamped, FakeWhapi):
    """FakeWhapi that also counts text replies per user, with the time each arrived.

    Arrived = when the request's last bytes reached the socket (kernel time, ``bench.wiretime``);
    ``last_reply_read_at`` keeps when its first byte was read and ``last_reply_handled_at`` when
    its handler started, for comparison. ``replies`` keeps (arrived, to, body) of each text
    reply for the ``customers`` command (cleared by it).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reply_count: dict[str, int] = {}
        self.last_reply_at: dict[str, float] = {}
        self.last_reply_read_at: dict[str, float] = {}
        self.last_reply_handled_at: dict[str, float] = {}
        self.total_replies = 0
        self.replies: list[tuple[float, str, str]] = []
        self._waiters: dict[str, trio.Event] = {}
        self.changed = trio.Event()

    async def handle(self, request: Request) -> Response:
        handled = trio.current_time()
        _connection, first_byte, arrived = self._stamp()
        read = handled if first_byte is None else first_byte
        response = await super().handle(request)
        if request.method == "POST" and request.path == "/messages/text" and response.status < 300:
            to = str((request.json or {}).get("to", "")).split("@", 1)[0]
            self.reply_count[to] = self.reply_count.get(to, 0) + 1
            self.last_reply_at[to] = read if arrived is None else arrived
            self.last_reply_read_at[to] = read
            self.last_reply_handled_at[to] = handled
            self.total_replies += 1
            body = (request.json or {}).get("body")
            self.replies.append((self.last_reply_at[to], to, str(body)))
            waiter = self._waiters.pop(to, None)
            if waiter is not None:
                waiter.set()
            self.changed.set()
            self.changed = trio.Event()
        return response

    def waiter(self, user: str) -> trio.Event:
        event = self._waiters.get(user)
        if event is None:
            event = self._waiters[user] = trio.Event()
        return event


class TimedOpenAI(_WireStamped, FakeOpenAI):
    """FakeOpenAI that adds up, per user (safety identifier), the time its calls took.

    ``busy``: from each request's last bytes reaching the socket (kernel time) to its
    response's last bytes handed to the socket (``bench.wiretime``); ``busy_reads``: the same
    from the request's first byte read; ``busy_handlers``: the handlers' own time.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.busy: dict[str, float] = {}
        self.busy_reads: dict[str, float] = {}
        self.busy_handlers: dict[str, float] = {}

    def reset_user(self, key: str) -> None:
        self.busy[key] = self.busy_reads[key] = self.busy_handlers[key] = 0.0

    async def handle(self, request: Request) -> Response:
        started = trio.current_time()
        connection, first_byte, arrived = self._stamp()
        response = await super().handle(request)
        data = request.json if isinstance(request.json, dict) else {}
        who = data.get("safety_identifier") or (data.get("metadata") or {}).get("user")
        if who:
            key = str(who)[:32]
            finished = trio.current_time()
            self.busy_handlers[key] = self.busy_handlers.get(key, 0.0) + finished - started
            if connection is None or first_byte is None:
                for busy in (self.busy, self.busy_reads):
                    busy[key] = busy.get(key, 0.0) + finished - started
            else:
                self._count_until_sent(connection, key, first_byte, arrived)
        return response

    def _count_until_sent(
        self,
        connection: wiretime.StampedStream,
        key: str,
        first_byte: float,
        arrived: float | None,
    ) -> None:
        """Add to ``busy``/``busy_reads`` as the response's bytes go out (maybe in two writes)."""
        since = first_byte if arrived is None else arrived
        since_read = first_byte

        def sent(at: float) -> None:
            nonlocal since, since_read
            self.busy[key] = self.busy.get(key, 0.0) + at - since
            self.busy_reads[key] = self.busy_reads.get(key, 0.0) + at - since_read
            since = since_read = at

        connection.on_sent = sent


@attrs.frozen
class TurnSample:
    """One message→reply cycle of the turns command (seconds)."""

    turn: int
    #: Webhook sent → the reply's last bytes reached the fake Whapi's socket (kernel time).
    end_to_end: float
    #: In the fake OpenAI: request's last bytes reached the socket → response handed to the
    #: socket, summed over the turn's calls.
    inside_fakes: float
    ack: float
    #: The same two from the requests' first bytes read (the load process's read delay counts).
    end_to_end_reads: float
    inside_fakes_reads: float
    #: The same two taken at the fakes' handlers (start of the reply's; OpenAI's own time).
    end_to_end_handlers: float
    inside_fakes_handlers: float


def _split(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    assert parts.hostname in {"127.0.0.1", "localhost", "::1"}, "loopback only"
    return parts.hostname, parts.port or 80, parts.path or "/"


class LoadProcess:
    def __init__(self, whapi: TimedWhapi, openai: TimedOpenAI) -> None:
        self.whapi = whapi
        self.openai = openai

    # -- helpers -----------------------------------------------------------------------------

    @staticmethod
    def host_port(url: str) -> tuple[str, int]:
        host, port, _ = _split(url)
        return host, port

    @staticmethod
    def webhook_body(message: Any, text_of: Callable[[Any], str]) -> bytes:
        """The webhook of a ``bench.campaign_load.Message``."""
        return text_webhook(message.user, text_of(message))[1]

    async def metrics(self, url: str, conn: Conn | None = None) -> dict[str, float]:
        """Scrape the bot's /metrics into {name{labels}: value} (over ``conn`` if given)."""
        host, port, _ = _split(url)
        own = conn is None
        conn = conn or Conn(host, port)
        try:
            status, body = await conn.request(build_request("GET", f"{host}:{port}", "/metrics"))
        finally:
            if own:
                await conn.aclose()
        out: dict[str, float] = {}
        if status != 200:
            return out
        for line in body.decode().splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                with contextlib.suppress(ValueError):
                    out[name] = float(value)
        return out

    async def wait_replies(self, users: list[str], minimum: int, timeout: float) -> int:
        """Wait until each user has at least ``minimum`` replies; return how many do."""
        with trio.move_on_after(timeout):
            while True:
                done = sum(1 for u in users if self.whapi.reply_count.get(u, 0) >= minimum)
                if done >= len(users):
                    return done
                await self.whapi.changed.wait()
        return sum(1 for u in users if self.whapi.reply_count.get(u, 0) >= minimum)

    # -- commands ----------------------------------------------------------------------------

    async def cmd_openloop(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Text webhooks at a fixed rate over ``users`` distinct users (uniform)."""
        host, port, path = _split(spec["url"])
        users = int(spec["users"])
        rng = random.Random(spec.get("seed", 1))
        hostport = f"{host}:{port}"
        base = int(spec.get("user_base", USER_BASE))

        def make(index: int) -> bytes:
            user = user_id(rng.randrange(users), base)
            _mid, body = text_webhook(user, TEXTS[index % len(TEXTS)])
            return build_request("POST", hostport, path, body)

        result = await open_loop(
            host,
            port,
            make,
            rate=float(spec["rate"]),
            count=int(spec["count"]),
            max_seconds=float(spec["max_seconds"]),
            connections=int(spec.get("connections", 64)),
            warmup_seconds=float(spec.get("warmup_seconds", 1.0)),
        )
        return result.summary()

    async def cmd_closed(self, spec: dict[str, Any]) -> dict[str, Any]:
        """One text webhook for each of ``users`` users, ``concurrency`` in flight; ids out."""
        host, port, path = _split(spec["url"])
        base = int(spec.get("user_base", USER_BASE))
        hostport = f"{host}:{port}"
        ids: list[str] = [""] * int(spec["users"])

        def make(index: int) -> bytes:
            mid, body = text_webhook(user_id(index, base), TEXTS[index % len(TEXTS)])
            ids[index] = mid
            return build_request("POST", hostport, path, body)

        ok, errors, seconds, failed = await closed_loop(
            host,
            port,
            make,
            count=len(ids),
            concurrency=int(spec.get("concurrency", 32)),
            max_seconds=float(spec["max_seconds"]),
        )
        failed_set = set(failed)
        acked = [mid for i, mid in enumerate(ids) if mid and i not in failed_set]
        out: dict[str, Any] = {"ok": ok, "errors": errors, "seconds": round(seconds, 3)}
        if spec.get("ids_file"):
            with open(spec["ids_file"], "w") as f:
                json.dump(acked, f)
        return out

    async def cmd_replies(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Wait until users ``[0, users)`` (from ``user_base``) have ``minimum`` replies."""
        base = int(spec.get("user_base", USER_BASE))
        users = [user_id(i, base) for i in range(int(spec["users"]))]
        started = trio.current_time()
        done = await self.wait_replies(users, int(spec.get("minimum", 1)), spec["timeout"])
        return {
            "replied": done,
            "seconds": round(trio.current_time() - started, 3),
            "total_replies": self.whapi.total_replies,
        }

    async def cmd_round(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Churn round: every user sends one message; wait until each got a reply."""
        started = trio.current_time()
        minimum = {user_id(i, int(spec["user_base"])): 0 for i in range(int(spec["users"]))}
        for user in minimum:
            minimum[user] = self.whapi.reply_count.get(user, 0) + 1
        sent = await self.cmd_closed(spec)
        with trio.move_on_after(float(spec["timeout"])):
            while any(self.whapi.reply_count.get(u, 0) < m for u, m in minimum.items()):
                await self.whapi.changed.wait()
        replied = sum(1 for u, m in minimum.items() if self.whapi.reply_count.get(u, 0) >= m)
        return {
            **sent,
            "replied": replied,
            "seconds_to_all_replies": round(trio.current_time() - started, 3),
        }

    async def cmd_flood(self, spec: dict[str, Any]) -> dict[str, Any]:
        """``count`` concurrent first messages to one (new) user; all released at once."""
        host, port, path = _split(spec["url"])
        user = spec["user"]
        hostport = f"{host}:{port}"
        before = await self.metrics(spec["url"])
        go = trio.Event()
        statuses: dict[int, int] = {}
        conns = int(spec.get("connections", 256))
        per_conn = math.ceil(int(spec["count"]) / conns)

        async def client() -> None:
            conn = Conn(host, port)
            try:
                await conn._ensure()
                await go.wait()
                for _ in range(per_conn):
                    _mid, body = text_webhook(user, "hola")
                    try:
                        status, _ = await conn.request(build_request("POST", hostport, path, body))
                    except HTTPError:
                        status = 0
                    statuses[status] = statuses.get(status, 0) + 1
            finally:
                await conn.aclose()

        with trio.move_on_after(float(spec.get("max_seconds", 60))):
            async with trio.open_nursery() as nursery:
                for _ in range(conns):
                    nursery.start_soon(client)
                await trio.sleep(0.5)
                go.set()
        after = await self.metrics(spec["url"])
        return {
            "sent": per_conn * conns,
            "statuses": {str(k): v for k, v in statuses.items()},
            "spawns": after.get("wabot_actor_spawns_total", math.nan)
            - before.get("wabot_actor_spawns_total", math.nan),
        }

    async def cmd_turns(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Turn overhead: ``users`` concurrent users, each ``rounds`` message→reply cycles.

        overhead = (fake Whapi received the reply − webhook sent) − time inside the fakes
        for that user's turn (OpenAI calls on the critical path, from TimedOpenAI). Received and
        inside are taken at the fakes' sockets (``bench.wiretime``); the same figures taken at
        the fakes' handlers are kept under ``*_handlers`` for comparison.
        """
        host, port, path = _split(spec["url"])
        hostport = f"{host}:{port}"
        base = int(spec.get("user_base", USER_BASE))
        rounds = int(spec["rounds"])
        timeout = float(spec.get("timeout", 10))
        rows: list[TurnSample] = []
        missing = 0

        async def one_user(index: int) -> None:
            nonlocal missing
            user = user_id(index, base)
            sid = safety_identifier(user)[:32]
            conn = Conn(host, port)
            rng = random.Random(index)
            think = float(spec.get("think_seconds", 0.05))
            await trio.sleep(rng.uniform(0, think))  # stagger the users
            try:
                for turn in range(rounds):
                    waiter = self.whapi.waiter(user)
                    self.openai.reset_user(sid)
                    _mid, body = text_webhook(user, TEXTS[turn % len(TEXTS)])
                    raw = build_request("POST", hostport, path, body)
                    sent = trio.current_time()
                    try:
                        status, _ = await conn.request(raw)
                    except HTTPError:
                        status = 0
                    acked = trio.current_time()
                    if status != 200:
                        missing += 1
                        continue
                    with trio.move_on_after(timeout):
                        await waiter.wait()
                    if not waiter.is_set():
                        missing += 1
                        continue
                    rows.append(
                        TurnSample(
                            turn=turn,
                            end_to_end=self.whapi.last_reply_at[user] - sent,
                            inside_fakes=self.openai.busy[sid],
                            ack=acked - sent,
                            end_to_end_reads=self.whapi.last_reply_read_at[user] - sent,
                            inside_fakes_reads=self.openai.busy_reads[sid],
                            end_to_end_handlers=self.whapi.last_reply_handled_at[user] - sent,
                            inside_fakes_handlers=self.openai.busy_handlers[sid],
                        )
                    )
                    await trio.sleep(rng.uniform(0.5, 1.5) * think)
            finally:
                await conn.aclose()

        unstamped = self.whapi.unstamped + self.openai.unstamped
        started = trio.current_time()
        async with trio.open_nursery() as nursery:
            for index in range(int(spec["users"])):
                nursery.start_soon(one_user, index)
        elapsed = trio.current_time() - started
        unstamped = self.whapi.unstamped + self.openai.unstamped - unstamped

        def stats(select: Callable[[TurnSample], bool]) -> dict[str, Any]:
            chosen = [r for r in rows if select(r)]
            return {
                "turns": len(chosen),
                "end_to_end": latency_summary([r.end_to_end for r in chosen]),
                "inside_fakes": latency_summary([r.inside_fakes for r in chosen]),
                "overhead": latency_summary([r.end_to_end - r.inside_fakes for r in chosen]),
                "ack": latency_summary([r.ack for r in chosen]),
                "overhead_reads": latency_summary(
                    [r.end_to_end_reads - r.inside_fakes_reads for r in chosen]
                ),
                "overhead_handlers": latency_summary(
                    [r.end_to_end_handlers - r.inside_fakes_handlers for r in chosen]
                ),
            }

        return {
            "users": int(spec["users"]),
            "rounds": rounds,
            "missing": missing,
            "seconds": round(elapsed, 2),
            "turns_per_second": round(len(rows) / elapsed, 1) if elapsed else math.nan,
            "unstamped_requests": unstamped,
            "all": stats(lambda r: True),
            "first_turn": stats(lambda r: r.turn == 0),
            "steady": stats(lambda r: r.turn > 0),
        }

    async def cmd_soak(self, spec: dict[str, Any]) -> dict[str, Any]:
        """A time-compressed day of ``users`` customers; see ``bench.soak`` for the model."""
        from bench.soak_model import build_schedule

        host, port, path = _split(spec["url"])
        hostport = f"{host}:{port}"
        events = build_schedule(
            users=int(spec["users"]),
            duration=float(spec["duration"]),
            seed=int(spec.get("seed", 7)),
            user_base=int(spec.get("user_base", USER_BASE)),
            duplicate_rate=float(spec.get("duplicate_rate", 0.02)),
            curve=str(spec.get("curve", "steady")),
        )
        active_window = float(spec["active_window"])
        sample_every = float(spec.get("sample_seconds", 1.0))
        ids_file = spec.get("ids_file")
        sent_at: dict[str, float] = {}
        last_event: dict[str, float] = {}
        unanswered: dict[str, float] = {}  # user -> time of oldest unanswered message
        message_ids: list[str] = []
        samples: list[dict[str, float]] = []

        def make(index: int) -> bytes:
            event = events[index]
            if event.kind == "text":
                _mid, body = text_webhook(event.user, event.text, event.message_id)
            else:
                body = presence_webhook(event.user, event.kind)
            return build_request("POST", hostport, path, body)

        start_holder: list[float] = []

        def on_done(index: int, status: int, finished: float) -> None:
            event = events[index]
            last_event[event.user] = finished
            if event.kind == "text" and status == 200:
                if event.message_id not in sent_at:
                    sent_at[event.message_id] = finished
                    message_ids.append(event.message_id)
                unanswered.setdefault(event.user, finished)

        async def sampler(stop: trio.Event) -> None:
            seen_replies: dict[str, int] = {}
            while not stop.is_set():
                now = trio.current_time()
                for user, at in list(self.whapi.last_reply_at.items()):
                    count = self.whapi.reply_count.get(user, 0)
                    if seen_replies.get(user) != count:
                        seen_replies[user] = count
                        last_event[user] = max(last_event.get(user, 0.0), at)
                        if unanswered.get(user, math.inf) <= at:
                            unanswered.pop(user, None)
                cutoff = now - active_window
                active = sum(1 for t in last_event.values() if t >= cutoff) + sum(
                    1 for u, t in unanswered.items() if last_event.get(u, 0.0) < cutoff
                )
                try:
                    metrics = await self.metrics(spec["url"])
                except HTTPError:
                    metrics = {}
                samples.append(
                    {
                        "t": round(now - (start_holder[0] if start_holder else now), 2),
                        "live": metrics.get("wabot_live_actors", math.nan),
                        "active": active,
                        "rss_mb": round(
                            metrics.get("process_resident_memory_bytes", math.nan) / 2**20, 1
                        ),
                        "pending": metrics.get("wabot_inbox_pending", math.nan),
                    }
                )
                with trio.move_on_after(sample_every):
                    await stop.wait()

        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            start_holder.append(trio.current_time())
            nursery.start_soon(sampler, stop)
            result = await open_loop(
                host,
                port,
                make,
                rate=len(events) / float(spec["duration"]),
                count=len(events),
                max_seconds=float(spec["duration"]) + 5,
                connections=int(spec.get("connections", 64)),
                schedule=[e.at for e in events],
                on_done=on_done,
            )
            # Let the last turns finish and the actors idle out, still sampling.
            with trio.move_on_after(float(spec["settle_seconds"])):
                while True:
                    metrics = await self.metrics(spec["url"])
                    if metrics.get("wabot_live_actors", 1) == 0 and not metrics.get(
                        "wabot_inbox_pending", 1
                    ):
                        break
                    await trio.sleep(0.5)
            stop.set()
        if ids_file:
            with open(ids_file, "w") as f:
                json.dump(message_ids, f)
        texts = sum(1 for e in events if e.kind == "text")
        return {
            "load": result.summary(),
            "events": len(events),
            "text_webhooks": texts,
            "duplicates_sent": sum(1 for e in events if e.duplicate),
            "distinct_messages_acked": len(message_ids),
            "users_with_replies": sum(1 for c in self.whapi.reply_count.values() if c),
            "replies": self.whapi.total_replies,
            "samples": samples,
            "final_metrics": await self.metrics(spec["url"]),
        }

    async def cmd_reset(self, spec: dict[str, Any]) -> dict[str, Any]:
        self.whapi.reply_count.clear()
        self.whapi.last_reply_at.clear()
        self.whapi.total_replies = 0
        self.whapi.clear_calls()
        self.openai.clear_calls()
        self.openai.busy.clear()
        self.whapi.webhook_url = spec.get("hook_url")
        self.whapi.echo = bool(spec.get("echo", False))
        return {"ok": True}

    async def cmd_customers(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Customers' messages on a schedule, with retries; per-customer waits (campaign_load)."""
        return await campaign_load.run_customers(self, spec)

    async def cmd_realism(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Set the fakes' latencies and the fake OpenAI account's limits (``Realism`` JSON)."""
        realism = Realism.from_json(spec)
        for name, value in realism.openai_kwargs().items():
            if name == "seed":
                self.openai.rng = random.Random(value)
            else:
                setattr(self.openai, name, value)
        self.whapi.send_latency = realism.send_latency
        self.whapi.rng = random.Random(realism.whapi_kwargs()["seed"])
        return {"realism": realism.to_json(), "stats": self.openai.model_stats()}

    async def cmd_metrics(self, spec: dict[str, Any]) -> dict[str, Any]:
        return {"metrics": await self.metrics(spec["url"])}


async def _serve() -> None:
    wiretime.install()
    whapi = TimedWhapi(WHAPI_TOKEN, echo=False, max_calls=20_000)
    openai = TimedOpenAI(OPENAI_KEY, max_calls=20_000, max_responses=2_000, max_model_calls=200_000)
    process = LoadProcess(whapi, openai)
    async with trio.open_nursery() as nursery:
        whapi_url = await nursery.start(whapi.serve)
        openai_url = await nursery.start(openai.serve)
        _emit(
            {
                "event": "fakes",
                "whapi_url": whapi_url,
                "openai_url": openai_url,
                "whapi_token": WHAPI_TOKEN,
                "openai_key": OPENAI_KEY,
            }
        )
        stdin = trio.wrap_file(sys.stdin)
        while True:
            line = await stdin.readline()
            if not line:
                break
            spec = json.loads(line)
            command = spec.pop("cmd")
            if command == "quit":
                break
            handler = getattr(process, f"cmd_{command}")
            try:
                with _quiet_collector() if command in LOAD_COMMANDS else contextlib.nullcontext():
                    result = await handler(spec)
            except Exception as exc:  # reported to the runner, which fails the benchmark
                result = {"error": f"{type(exc).__name__}: {exc}"}
            _emit({"event": "result", "cmd": command, **result})
        nursery.cancel_scope.cancel()


#: The commands that generate load (and measure it); the others are quick look-ups.
LOAD_COMMANDS = frozenset({"openloop", "closed", "turns", "round", "flood", "soak", "customers"})


@contextlib.contextmanager
def _quiet_collector() -> Iterator[None]:
    """Collect, then freeze what is left: full collections meanwhile see only new objects."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, default=str) + "\n")
    sys.stdout.flush()


def main() -> int:
    trio.run(_serve)
    return 0


if __name__ == "__main__":
    sys.exit(main())
