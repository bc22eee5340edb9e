"""The gateway actor: from a parsed webhook to the user actors, through the durable inbox.

For each webhook it owns two decisions: is this message new (a bounded, TTL'd window of ids
it has delivered, backed by the store's durable dedupe set), and where does each event go.
Messages are journaled in the store's inbox *before* the webhook is acknowledged; only then
are they told to their user actor, without waiting: a full mailbox (a flood, an actor backing
off or parked) flags the actor to reload from the inbox instead, so the webhook is answered
in milliseconds whatever one user's actor is doing. Presences go only to live actors (they
never spawn one); agent messages are not journaled, so they wait (bounded) for mailbox space.

Each webhook comes to one channel (``actors.channels``): it is parsed with that channel's
settings and prefix, so its customers' keys and message ids are the channel's, and it is
counted under the channel (``channel_webhooks``, ``channel_messages``). A body whose
``channel_id`` is not the channel's (``mismatch``) is the caller's to refuse.
"""

from __future__ import annotations

import logging
from typing import Any

import attrs
import cachetools
import trio

from actors.channels import DEFAULT, Channel, one_channel, split_key
from actors.customer.events import InboundMessage
from actors.runtime.supervisor import Draining, Supervisor
from actors.runtime.telemetry import Telemetry
from actors.settings import Settings
from gateway.parse import ParsedWebhook, parse_webhook
from store import InboxEntry, InboxStatus, Store, StoreUnavailable
from store.records import utcnow

log = logging.getLogger("gateway")


class DedupeWindow:
    """Message ids recently delivered: at most ``size`` of them, each for ``ttl`` seconds
    (a ``cachetools.TTLCache`` on trio's clock; the least recently seen go first)."""

    def __init__(self, size: int, ttl: float) -> None:
        self._seen: cachetools.TTLCache[str, None] = cachetools.TTLCache(
            maxsize=size, ttl=ttl, timer=trio.current_time
        )

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, message_id: object) -> bool:
        return isinstance(message_id, str) and message_id in self._seen

    def shrink(self, fraction: float) -> None:
        """Forget the oldest ``fraction`` of the ids (memory pressure; the store still dedupes)."""
        for _ in range(int(len(self._seen) * fraction)):
            self._seen.popitem()

    def add(self, message_id: str) -> None:
        self._seen[message_id] = None


@attrs.define
class GatewayCounters:
    webhooks: dict[str, int] = attrs.Factory(dict)
    messages: int = 0
    duplicates: int = 0
    ignored: dict[str, int] = attrs.Factory(dict)
    presences: int = 0
    agent_messages: int = 0

    def webhook(self, outcome: str) -> None:
        self.webhooks[outcome] = self.webhooks.get(outcome, 0) + 1


@attrs.frozen
class Outcome:
    status: int
    body: dict[str, Any]


class Gateway:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        supervisor: Supervisor,
        telemetry: Telemetry,
        channels: dict[str, Channel] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.supervisor = supervisor
        self.telemetry = telemetry
        self.channels = channels if channels is not None else one_channel(settings)
        #: Whapi's channel ids the channels file names, to their channel.
        self.channel_ids = {c.channel_id: n for n, c in self.channels.items() if c.channel_id}
        #: (channel, outcome) -> webhooks; channel -> new messages journaled.
        self.channel_webhooks: dict[tuple[str, str], int] = {}
        self.channel_messages: dict[str, int] = dict.fromkeys(self.channels, 0)
        self.window = DedupeWindow(settings.dedupe_window_size, settings.dedupe_window_seconds)
        self.counters = GatewayCounters()
        self.delivery_timeout = max(1.0, settings.whapi_timeout_seconds)

    async def handle(self, body: Any, channel: Channel | None = None) -> Outcome:
        """Parse a decoded webhook body and ``accept`` it."""
        return await self.accept(self.parse(body, channel), channel)

    def parse(self, body: Any, channel: Channel | None = None) -> ParsedWebhook | None:
        """What ``body`` means to ``channel`` (None: the gateway's own settings, no prefix), or
        None if the parser failed (logged; ``accept`` answers 200).

        It reads and changes no state of the gateway, so it may run in a worker thread.
        """
        settings = channel.settings if channel is not None else self.settings
        try:
            return parse_webhook(
                body,
                allow_groups=not settings.ignore_groups,
                prefix=channel.prefix if channel is not None else "",
            )
        except Exception:
            # The parser is total by design (fuzzed); should a bug slip through anyway, a 500
            # would make Whapi redeliver the same body for days. Log it and accept it.
            log.exception("webhook body could not be parsed; acknowledged and ignored")
            return None

    def mismatch(self, parsed: ParsedWebhook | None, channel: Channel) -> str | None:
        """The body's ``channel_id`` when it is not ``channel``'s: another channel's, or not
        the one the channels file gives ``channel``; None when it may be ``channel``'s."""
        if parsed is None or parsed.channel_id is None:
            return None
        owner = self.channel_ids.get(parsed.channel_id)
        if owner is not None and owner != channel.name:
            return parsed.channel_id
        if channel.channel_id is not None and parsed.channel_id != channel.channel_id:
            return parsed.channel_id
        return None

    def count(self, channel: str, outcome: str) -> None:
        """One webhook of ``channel`` with ``outcome`` (the ``channel`` label of /metrics)."""
        key = (channel, outcome)
        self.channel_webhooks[key] = self.channel_webhooks.get(key, 0) + 1

    async def accept(self, parsed: ParsedWebhook | None, channel: Channel | None = None) -> Outcome:
        """Journal and route a parsed webhook; the answer the webhook gets."""
        outcome = await self._accept(parsed)
        self.count(
            channel.name if channel is not None else DEFAULT,
            "accepted" if outcome.status == 200 else f"http_{outcome.status}",
        )
        return outcome

    async def _accept(self, parsed: ParsedWebhook | None) -> Outcome:
        if parsed is None:
            self.counters.webhook("parse_error")
            self.counters.ignored["parse_error"] = self.counters.ignored.get("parse_error", 0) + 1
            return Outcome(200, {"received": True})
        for reason, count in parsed.ignored.items():
            self.counters.ignored[reason] = self.counters.ignored.get(reason, 0) + count
        try:
            await self._journal_and_route(parsed)
        except StoreUnavailable as exc:
            self.counters.webhook("store_unavailable")
            log.error("webhook not acknowledged, the inbox cannot be written: %s", exc)
            return Outcome(503, {"error": "storage unavailable, retry later"})
        except Draining:
            self.counters.webhook("draining")
            return Outcome(503, {"error": "shutting down, retry later"})
        self.counters.webhook("accepted")
        return Outcome(200, {"received": True})

    def _log_received(self, event: InboundMessage) -> None:
        if not log.isEnabledFor(logging.INFO):
            return
        log.info(
            "message %s from %s: %s, %d chars%s",
            event.message_id,
            event.user_id,
            event.kind,
            len(event.text),
            f": {event.text!r}" if self.settings.log_message_text else "",
        )

    async def _journal_and_route(self, parsed: ParsedWebhook) -> None:
        fresh = [m for m in parsed.messages if m.event.message_id not in self.window]
        self.counters.duplicates += len(parsed.messages) - len(fresh)
        if fresh:
            now = utcnow()
            entries = [InboxEntry(m.event.message_id, m.event.user_id, now, m.raw) for m in fresh]
            with self.telemetry.store_commit_seconds.time():
                statuses = await self.store.inbox_add(entries, payloads=[m.encoded for m in fresh])
            for event, status in zip((m.event for m in fresh), statuses, strict=True):
                if status is InboxStatus.DONE:
                    self.counters.duplicates += 1
                else:
                    # PENDING: a concurrent or post-restart redelivery; the actor dedupes it.
                    if status is InboxStatus.NEW:
                        self.counters.messages += 1
                        channel = split_key(event.user_id)[0]
                        self.channel_messages[channel] = self.channel_messages.get(channel, 0) + 1
                        self._log_received(event)
                    else:
                        self.counters.duplicates += 1
                    # Journaled: never wait for mailbox space (a full one resyncs from the inbox).
                    self.supervisor.deliver(event.user_id, event)
                self.window.add(event.message_id)
        for agent in parsed.agent_messages:
            self.counters.agent_messages += 1
            await self.supervisor.tell(agent.user_id, agent, wait=self.delivery_timeout)
        for presence in parsed.presences:
            self.counters.presences += 1
            self.supervisor.tell_if_live(presence.user_id, presence)

    def recover(self) -> int:
        """Activate every user with journaled-but-unanswered messages (after a restart).

        The messages of a channel no longer configured stay pending in the inbox, untouched,
        and are answered once the channel is configured again.
        """
        users = self.store.pending_users()
        orphans: dict[str, int] = {}
        for user_id in users:
            channel = split_key(user_id)[0]
            if channel not in self.channels:
                orphans[channel] = orphans.get(channel, 0) + 1
                continue
            self.supervisor.activate(user_id)
        for channel, count in orphans.items():
            log.warning(
                "channel %s is not configured: the unanswered messages of %d customers stay "
                "in the inbox until it is",
                channel,
                count,
            )
        replayed = len(users) - sum(orphans.values())
        if replayed:
            log.info("replaying unanswered messages for %d users", replayed)
        return replayed
