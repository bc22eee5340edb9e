"""Load side of the realistic-latency benchmarks: customers' messages, retries, per-customer waits.

Runs inside the load process (``bench.loadgen``, command ``customers``), next to the fakes, so
the fakes' times (when a reply reached the fake Whapi's socket, when each model call started
and how long the fake model made it take) share the generator's trio clock.

A schedule is a list of `Message` (when, which customer, a unique ``ref<tag>`` in its text):

* ``campaign``: customers answering a broadcast; first messages arrive at a rate that decays
  exponentially after the broadcast (``mean_arrival`` seconds) within ``window`` seconds, each
  customer sends one to three messages (weights 50/30/20) ``gap_min``–``gap_max`` seconds apart;
* ``ramp``: one message from each new customer at a rate rising linearly from ``start_rate`` to
  ``end_rate`` over ``seconds``;
* ``steady``: one message from each new customer at ``rate`` for ``seconds``.

Messages are sent open-loop at their times, each attempt in a task of its own over one of
``connections`` keep-alive connections opened before the start (an attempt waiting for a free
one counts that wait), its latency taken from when it was due, so slow acks cannot hold later
messages back unseen. An answer other than 200 (or a socket error) is retried like Whapi
retries webhooks, after a backoff of 1, 2, 4, … up to 30 s (±20 % jitter, seeded), at most
``max_attempts`` times. Every attempt's answer time
is kept (the ack latency). A message is answered when a reply part the fake Whapi received
names its tag (the fake model echoes the customer's text, so the reply to a turn names every
message the turn covered), or by a later reply part naming none (wabot's fallback notice when
a turn fails). While the load runs a sampler reads wabot's ``/metrics``
(``wabot_turns_in_flight``, ``wabot_webhooks_shed_total``, …), the bot's CPU time from
``/proc`` and the fake model's calls in flight.

Per customer: wait = first reply naming their last message − their last message's send time;
model = the time the fake model's injected latency of that customer's calls overlapped that
wait; queueing = wait − buffer − model (what wabot adds). Every loop is bounded in count and
time.
"""

from __future__ import annotations

import math
import random
import re
import time
from collections.abc import Callable, Iterable
from typing import Any

import attrs
import trio

from actors.upstream.model import safety_identifier
from bench.common import cpu_seconds
from bench.httpload import Conn, HTTPError, build_request, latency_summary, percentile
from sandbox.openai import FakeOpenAI, ModelCall

TAG = re.compile(r"\bref(\d+)\b")
MAX_BACKOFF_SECONDS = 30.0
TEXTS = (
    "Hola, me interesa la promoción",
    "¿Cuánto cuesta el plan mensual y tienen envío a Medellín?",
    "Sí, quiero más información",
    "¿Hasta cuándo es válida la oferta?",
    "ok gracias",
)


@attrs.frozen
class Message:
    """One message of the schedule: ``at`` seconds after the start."""

    at: float
    user: str
    tag: int
    last: bool


def _customer(base: int, index: int) -> str:
    return str(base + index)


def campaign_schedule(spec: dict[str, Any], base: int) -> list[Message]:
    """Customers answering a broadcast within ``window`` seconds (module docstring)."""
    rng = random.Random(int(spec.get("seed", 22)))
    customers = int(spec["customers"])
    window = float(spec.get("window", 60.0))
    mean = float(spec.get("mean_arrival", 20.0))
    gap_min, gap_max = float(spec.get("gap_min", 0.5)), float(spec.get("gap_max", 2.5))
    messages: list[Message] = []
    tag = 0
    for index in range(customers):
        count = rng.choices((1, 2, 3), weights=(50, 30, 20))[0]
        gaps = [rng.uniform(gap_min, gap_max) for _ in range(count - 1)]
        latest_first = max(0.0, window - sum(gaps))
        # Exponential decay after the broadcast, truncated to what still ends within the window.
        u = rng.random()
        first = -mean * math.log(1 - u * (1 - math.exp(-latest_first / mean)))
        at = first
        user = _customer(base, index)
        for n in range(count):
            messages.append(Message(at, user, tag, n == count - 1))
            tag += 1
            if n < count - 1:
                at += gaps[n]
    messages.sort(key=lambda m: m.at)
    return messages


def ramp_schedule(spec: dict[str, Any], base: int) -> list[Message]:
    """One message per new customer, rate rising linearly (``start_rate`` → ``end_rate``)."""
    r0, r1, seconds = float(spec["start_rate"]), float(spec["end_rate"]), float(spec["seconds"])
    slope = (r1 - r0) / seconds
    messages: list[Message] = []
    index = 0
    while True:
        # Arrivals so far at time t: r0 t + slope t^2 / 2; the index-th arrives when it is index.
        t = (-r0 + math.sqrt(r0 * r0 + 2 * slope * index)) / slope if slope else index / r0
        if t > seconds:
            return messages
        messages.append(Message(t, _customer(base, index), index, True))
        index += 1


def steady_schedule(spec: dict[str, Any], base: int) -> list[Message]:
    rate, seconds = float(spec["rate"]), float(spec["seconds"])
    count = int(rate * seconds)
    return [Message(i / rate, _customer(base, i), i, True) for i in range(count)]


def ramp_rate(spec: dict[str, Any], at: float) -> float:
    """The ramp's offered rate ``at`` seconds after its start."""
    r0, r1, seconds = float(spec["start_rate"]), float(spec["end_rate"]), float(spec["seconds"])
    return r0 + (r1 - r0) * min(at, seconds) / seconds


SCHEDULES: dict[str, Callable[[dict[str, Any], int], list[Message]]] = {
    "campaign": campaign_schedule,
    "ramp": ramp_schedule,
    "steady": steady_schedule,
}


def text_of(message: Message) -> str:
    return f"{TEXTS[message.tag % len(TEXTS)]} ref{message.tag}"


@attrs.define
class Attempt:
    """One POST of a message: when it was due (trio clock), its answer and how long it took."""

    due: float
    status: int
    seconds: float


@attrs.define
class Sent:
    """What became of one message: its attempts and when it was acknowledged (200)."""

    message: Message
    attempts: list[Attempt] = attrs.Factory(list)
    acked_at: float | None = None


def overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def model_overlap(calls: Iterable[ModelCall], start: float, end: float) -> float:
    """How long the fake model's injected latency of ``calls`` overlapped ``[start, end]``."""
    return sum(overlap(c.started, c.started + c.latency, start, end) for c in calls)


def seconds_summary(values: list[float]) -> dict[str, float]:
    """p50/p90/p99/max in seconds (exact nearest-rank)."""
    ordered = sorted(values)
    out: dict[str, float] = {"n": len(ordered)}
    for label, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
        out[label] = round(percentile(ordered, q), 3)
    out["max"] = round(ordered[-1], 3) if ordered else math.nan
    out["mean"] = round(sum(ordered) / len(ordered), 3) if ordered else math.nan
    return out


def _metric_sum(metrics: dict[str, float], name: str) -> float | None:
    """The sum of a metric over its labels (None when wabot does not export it)."""
    values = [v for k, v in metrics.items() if k == name or k.startswith(name + "{")]
    return sum(values) if values else None


class CustomersRun:
    """One ``customers`` command: send a schedule, sample, wait for replies, summarize."""

    def __init__(self, load: Any, spec: dict[str, Any]) -> None:
        self.load = load
        self.whapi = load.whapi
        self.openai: FakeOpenAI = load.openai
        self.spec = spec
        self.url: str = spec["url"]
        self.bot_pid = int(spec["bot_pid"])
        self.buffer = float(spec["buffer_seconds"])
        self.max_attempts = int(spec.get("max_attempts", 8))
        self.rng = random.Random(int(spec.get("seed", 22)) + 1)
        base = int(spec.get("user_base", 573_200_000_000))
        self.schedule_spec = dict(spec["schedule"])
        self.messages = SCHEDULES[self.schedule_spec["kind"]](self.schedule_spec, base)
        self.sent = [Sent(m) for m in self.messages]
        self.answered: dict[int, float] = {}
        #: Reply parts naming no message (fallbacks), per customer: when they arrived.
        self.untagged: dict[str, list[float]] = {}
        self.samples: list[dict[str, float | None]] = []
        self.first_shed_at: float | None = None
        self.stop_sending_at = math.inf
        self.start = 0.0
        #: How late the generator itself sent a message (should stay near 0).
        self.generator_lag_max = 0.0
        self._replies_seen = 0

    # -- sending -------------------------------------------------------------------------------

    async def send_all(self) -> None:
        """Send every message at its time, each attempt in a task of its own (open loop).

        ``connections`` keep-alive connections are opened before the start (a few at a time)
        and shared: an attempt takes a free one, or waits for one, and that wait is part of
        its latency, measured from the time the attempt was due (its schedule, or its retry's
        time), not from when it got sent. Opening a connection per attempt instead flooded the
        bot's listen queue once acks slowed (SYNs dropped and retried for minutes: a client's
        artefact, not what Whapi does).
        """
        host, port = self.load.host_port(self.url)
        hostport = f"{host}:{port}"
        stop_after_shed = self.spec.get("stop_after_shed")
        free_send, free_receive = trio.open_memory_channel[Conn](math.inf)
        conns = [Conn(host, port) for _ in range(int(self.spec.get("connections", 256)))]
        for batch in range(0, len(conns), 32):
            async with trio.open_nursery() as opening:
                for conn in conns[batch : batch + 32]:
                    opening.start_soon(conn._ensure)
        for conn in conns:
            free_send.send_nowait(conn)
        pending = 0
        scheduled_all = False
        done = trio.Event()

        def finish_one() -> None:
            nonlocal pending
            pending -= 1
            if pending == 0 and scheduled_all:
                done.set()

        async def attempt(index: int, due: float, nursery: trio.Nursery) -> None:
            item = self.sent[index]
            raw = build_request(
                "POST", hostport, "/hook", self.load.webhook_body(item.message, text_of)
            )
            conn = await free_receive.receive()
            try:
                status, _ = await conn.request(raw)
            except HTTPError:
                status = 0
            finally:
                free_send.send_nowait(conn)
            answered = trio.current_time()
            item.attempts.append(Attempt(due, status, answered - due))
            if status == 200:
                item.acked_at = answered
                finish_one()
                return
            if status == 503 and self.first_shed_at is None:
                self.first_shed_at = due
                if stop_after_shed is not None:
                    self.stop_sending_at = due + float(stop_after_shed)
            if len(item.attempts) >= self.max_attempts:
                finish_one()
                return
            backoff = 2.0 ** (len(item.attempts) - 1)
            await trio.sleep(min(MAX_BACKOFF_SECONDS, backoff) * self.rng.uniform(0.8, 1.2))
            nursery.start_soon(attempt, index, trio.current_time(), nursery)

        try:
            async with trio.open_nursery() as nursery:
                self.start = trio.current_time() + 0.1
                for index, item in enumerate(self.sent):
                    due = self.start + item.message.at
                    if due > self.stop_sending_at:
                        del self.sent[index:]  # never sent: these messages leave the run
                        break
                    await trio.sleep_until(due)
                    lag = trio.current_time() - due
                    self.generator_lag_max = max(self.generator_lag_max, lag)
                    pending += 1
                    nursery.start_soon(attempt, index, due, nursery)
                scheduled_all = True
                if pending:
                    with trio.move_on_after(float(self.spec.get("send_deadline", 300))):
                        await done.wait()
                nursery.cancel_scope.cancel()
        finally:
            for conn in conns:
                await conn.aclose()

    # -- watching ------------------------------------------------------------------------------

    def collect_replies(self) -> None:
        replies = self.whapi.replies
        for arrived, user, body in replies[self._replies_seen :]:
            tags = TAG.findall(body)
            for tag in tags:
                self.answered.setdefault(int(tag), arrived)
            if not tags:  # a fallback or error notice: it answers what the customer had sent
                self.untagged.setdefault(user, []).append(arrived)
        self._replies_seen = len(replies)

    def reply_for(self, item: Sent) -> float | None:
        """When the message was answered: a reply naming it, else a later untagged reply."""
        named = self.answered.get(item.message.tag)
        if named is not None or item.acked_at is None:
            return named
        sent_at = self.start + item.message.at
        later = [t for t in self.untagged.get(item.message.user, ()) if t >= sent_at]
        return min(later) if later else None

    async def sample(self, stop: trio.Event) -> None:
        every = float(self.spec.get("sample_seconds", 0.5))
        cpu0 = cpu_seconds(self.bot_pid)
        own0 = time.process_time()
        host, port = self.load.host_port(self.url)
        conn = Conn(host, port)  # one kept-alive connection: no connect behind the load's
        while not stop.is_set():
            try:
                metrics = await self.load.metrics(self.url, conn)
            except HTTPError:
                metrics = {}
            self.collect_replies()
            self.samples.append(
                {
                    "t": round(trio.current_time() - self.start, 2),
                    "bot_cpu": round(cpu_seconds(self.bot_pid) - cpu0, 3),
                    "load_cpu": round(time.process_time() - own0, 3),
                    "turns_in_flight": metrics.get("wabot_turns_in_flight"),
                    "shed": _metric_sum(metrics, "wabot_webhooks_shed_total"),
                    "budget_waiting": metrics.get("wabot_model_budget_waiting"),
                    "live": metrics.get("wabot_live_actors"),
                    "pending": metrics.get("wabot_inbox_pending"),
                    "rss": metrics.get("process_resident_memory_bytes"),
                    "fake_model_in_flight": self.openai.model_in_flight,
                    "replies": len(self.answered),
                }
            )
            with trio.move_on_after(every):
                await stop.wait()
        await conn.aclose()

    async def wait_answered(self, timeout: float) -> None:
        waiting = [s for s in self.sent if s.acked_at is not None]
        with trio.move_on_after(timeout):
            while waiting:
                self.collect_replies()
                waiting = [s for s in waiting if self.reply_for(s) is None]
                await trio.sleep(0.25)

    async def run(self) -> dict[str, Any]:
        calls_before = len(self.openai.model_calls)
        created_before = self.openai.responses_created
        limited_before = self.openai.model_stats()["rate_limited"]
        self.whapi.replies.clear()
        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.sample, stop)
            await trio.sleep(0)
            await self.send_all()
            sent_done = trio.current_time() - self.start
            await self.wait_answered(float(self.spec.get("settle_seconds", 120)))
            answered_at = trio.current_time() - self.start
            # A last sample with everything answered (the bot's CPU for the whole run).
            await trio.sleep(float(self.spec.get("sample_seconds", 0.5)))
            stop.set()
        self.collect_replies()
        calls = list(self.openai.model_calls)[calls_before:]
        final = await self.load.metrics(self.url)
        return self.summary(
            calls,
            turns=self.openai.responses_created - created_before,
            rate_limited=self.openai.model_stats()["rate_limited"] - limited_before,
            sent_seconds=sent_done,
            answered_seconds=answered_at,
            final_metrics=final,
        )

    # -- results -------------------------------------------------------------------------------

    def summary(
        self,
        calls: list[ModelCall],
        *,
        turns: int,
        rate_limited: int,
        sent_seconds: float,
        answered_seconds: float,
        final_metrics: dict[str, float],
    ) -> dict[str, Any]:
        by_who: dict[str, list[ModelCall]] = {}
        for call in calls:
            if call.who and call.status == 200:
                by_who.setdefault(call.who, []).append(call)
        last: dict[str, Sent] = {}
        acked_messages = 0
        for item in self.sent:
            if item.acked_at is not None:
                acked_messages += 1
            if item.message.last:
                last[item.message.user] = item
        waits: list[float] = []
        queueing: list[float] = []
        model: list[float] = []
        unanswered_acked = [
            s.message.tag for s in self.sent if s.acked_at is not None and self.reply_for(s) is None
        ]
        customers_acked = {s.message.user for s in self.sent if s.acked_at is not None}
        for user, item in last.items():
            reply = self.reply_for(item)
            if item.acked_at is None or reply is None:
                continue
            sent_at = self.start + item.message.at
            wait = reply - sent_at
            own = model_overlap(by_who.get(safety_identifier(user), ()), sent_at, reply)
            waits.append(wait)
            model.append(own)
            queueing.append(wait - self.buffer - own)
        attempts = [a for s in self.sent for a in s.attempts]
        statuses: dict[str, int] = {}
        for a in attempts:
            statuses[str(a.status)] = statuses.get(str(a.status), 0) + 1
        in_flight = [s["turns_in_flight"] for s in self.samples if s["turns_in_flight"] is not None]
        fake_in_flight = [s["fake_model_in_flight"] or 0 for s in self.samples]
        rss = [s["rss"] for s in self.samples if s["rss"]]
        last_sample = self.samples[-1] if self.samples else {}
        return {
            "schedule": self.schedule_spec,
            "buffer_seconds": self.buffer,
            "messages_scheduled": len(self.messages),
            "messages_sent": len(self.sent),
            "messages_acked": acked_messages,
            "messages_acked_unanswered": len(unanswered_acked),
            "untagged_replies": sum(len(v) for v in self.untagged.values()),
            "customers": len(last),
            "customers_acked": len(customers_acked),
            "customers_answered": len(waits),
            "turns": turns,
            "rate_limited_429": rate_limited,
            "sent_seconds": round(sent_seconds, 2),
            "answered_seconds": round(answered_seconds, 2),
            "attempt_statuses": statuses,
            "retried_messages": sum(1 for s in self.sent if len(s.attempts) > 1),
            "generator_lag_max_ms": round(self.generator_lag_max * 1e3, 1),
            "ack_latency": latency_summary([a.seconds for a in attempts]),
            "ack_latency_first_attempt": latency_summary(
                [s.attempts[0].seconds for s in self.sent if s.attempts]
            ),
            "first_shed_at": None
            if self.first_shed_at is None
            else round(self.first_shed_at - self.start, 3),
            "wait": seconds_summary(waits),
            "model_in_wait": seconds_summary(model),
            "queueing": seconds_summary(queueing),
            "turns_in_flight_peak": max(in_flight) if in_flight else None,
            "fake_model_in_flight_peak": max(fake_in_flight, default=0),
            "bot_rss_peak_bytes": max(rss) if rss else None,
            "bot_cpu_seconds": last_sample.get("bot_cpu"),
            "load_cpu_seconds": last_sample.get("load_cpu"),
            "shed_total": _metric_sum(final_metrics, "wabot_webhooks_shed_total"),
            "final_pending": final_metrics.get("wabot_inbox_pending"),
            "per_second": self.per_second(),
            "samples": self.samples,
        }

    def per_second(self) -> list[dict[str, Any]]:
        """Per second of the run: messages due (first attempts), answers by status, ack p99 and
        ``replies``: messages whose answer (a reply part naming them) arrived in that second."""
        rows: dict[int, dict[str, Any]] = {}

        def row(second: int) -> dict[str, Any]:
            return rows.setdefault(
                second, {"t": second, "due": 0, "ok": 0, "shed": 0, "other": 0, "lat": []}
            )

        for item in self.sent:
            for n, a in enumerate(item.attempts):
                r = row(int(a.due - self.start))
                r["due"] += n == 0
                key = "ok" if a.status == 200 else "shed" if a.status == 503 else "other"
                r[key] += 1
                r["lat"].append(a.seconds)
        for arrived in self.answered.values():
            row(int(arrived - self.start))["replies"] = (
                row(int(arrived - self.start)).get("replies", 0) + 1
            )
        out = []
        for second in range(max(rows, default=-1) + 1):
            r = row(second)
            lat = sorted(r.pop("lat"))
            r["ack_p99_ms"] = round(percentile(lat, 0.99) * 1e3, 1) if lat else None
            r.setdefault("replies", 0)
            out.append(r)
        return out


async def run_customers(load: Any, spec: dict[str, Any]) -> dict[str, Any]:
    """The ``customers`` command of ``bench.loadgen``."""
    return await CustomersRun(load, spec).run()
