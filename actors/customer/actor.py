"""The user actor: one per WhatsApp customer, owning their buffer, typing state and turn.

The actor's loop only updates state and arms timers; it never waits on the network. A turn
(model call + reply) runs in a child task, so messages that arrive mid-turn go into the next
buffer with their timer running, presence updates keep landing, and inspection stays true.

Buffering (all numbers are settings): a message is answered ``buffer_seconds`` after the
*latest* message of the burst (``voice_buffer_seconds`` after a voice note); while the
customer is typing or recording after their last message, the answer waits until
``typing_seconds`` after that presence; but never longer than ``max_wait_seconds`` after the
first buffered message, and at once when ``max_buffered`` messages (or ``max_buffered_chars``
characters) are waiting. A buffer that fills while a turn runs keeps further text by merging
it into its last entry up to the character cap, and drops the rest under the documented
``flood`` rule (marked done in the inbox, counted).

Unless the turn gives way to them (``WABOT_SUPERSEDE``, the rule in
``buffering.may_supersede``): while nothing of its reply went out, the turn takes the messages
that came meanwhile (``take_superseding``) and answers them together with its own, once.

Every message the actor has not answered is also pending in the store's durable inbox; on
activation (first message, restart after a crash, process restart) the actor reloads them, so
nothing acknowledged is lost. Ids already buffered or answered are ignored (deduplication).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Coroutine
from datetime import datetime, timedelta
from typing import Any

import attrs
import cachetools
import trio

from actors.customer.buffering import (
    Added,
    Buffer,
    Timings,
    due_at,
    fitting,
    has_reset,
    may_supersede,
    timings_of,
)
from actors.customer.deps import UserDeps
from actors.customer.events import AgentMessage, Control, InboundMessage, Presence
from actors.customer.turn import TurnRunner, TurnState, session_expired
from actors.runtime.logcontext import bind, label_task
from actors.runtime.mailbox import Mailbox
from actors.runtime.supervisor import Cell
from actors.upstream.model import ConversationNotFound, ModelError
from actors.upstream.whapi import WhapiError
from store import StoreUnavailable, UserRecord
from store.records import PendingTurn, utcnow

log = logging.getLogger("actors.customer.actor")

#: The stage of a turn due while every slot of ``WABOT_MAX_CONCURRENT_TURNS`` is taken.
WAITING_FOR_SLOT = "waiting for a turn slot"
#: The stage of a turn waiting for the store to take a write again.
WAITING_FOR_STORE = "waiting for the store"


class UserActor:
    def __init__(self, key: str, cell: Cell, deps: UserDeps) -> None:
        self.key = key
        self.cell = cell
        self.deps = deps
        self.settings = deps.settings
        self.record: UserRecord | None = None
        self.buffer = Buffer()
        self.turn: TurnState | None = None
        self.typing_at: float | None = None
        self.typing_status: str | None = None
        self.turns = 0
        self.flood_dropped = 0
        #: The most recent ids this actor handled (redeliveries) and sent (their echoes).
        self._handled: cachetools.LRUCache[str, None] = cachetools.LRUCache(
            max(256, self.settings.max_buffered * 4)
        )
        self._sent_ids: cachetools.LRUCache[str, None] = cachetools.LRUCache(
            self.settings.echo_ids_size
        )
        self._nursery: trio.Nursery | None = None
        self._wake: trio.CancelScope | None = None
        self._subscribed = False
        self._background = 0
        self._closing = False
        self._conversation_lock: trio.Lock | None = None
        #: When the validator last asked for a correction (its cool-down is per user).
        self.validated_at: float | None = None
        #: The record's unfinished turn was looked at (once per activation).
        self._resume_checked = False
        #: Turns put off in a row by a store outage, and when the next attempt may start.
        self._deferrals = 0
        self._retry_at: float | None = None
        #: The last finished turn, for inspection: id, outcome, error, when, parts sent.
        self.last_turn: dict[str, Any] | None = None
        self.last_reply: dict[str, Any] | None = None

    @property
    def conversation_lock(self) -> trio.Lock:
        """Held while a turn talks to the model, and while notes are added to the conversation.

        Made on first use: most idle actors never need one, and each lock is three objects
        for the cycle collector to walk.
        """
        if self._conversation_lock is None:
            self._conversation_lock = trio.Lock()
        return self._conversation_lock

    # -- Behavior protocol -------------------------------------------------------------------

    async def run(self, mailbox: Mailbox) -> None:
        # The supervisor runs each actor in a task of its own, whose context is its own copy.
        label_task(user=self.key)
        self.record = self.deps.store.get(self.key)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._activate(mailbox)
            try:
                await self._loop(mailbox)
            finally:
                # Unstarted buffers stay pending in the durable inbox; an in-flight turn
                # finishes (the nursery waits for it, bounded by the drain deadline).
                self._closing = True

    def is_idle(self) -> bool:
        return not self.buffer.messages and self.turn is None and self._background == 0

    async def give_up(self, error: BaseException) -> None:
        """Restart limit reached: tell the customer, and settle what they were waiting for."""
        pending = self.deps.store.pending_for(self.key)
        chat_id = self.record.chat_id if self.record else None
        if chat_id is None and pending:
            parsed = self.deps.parse(pending[0].payload)
            chat_id = parsed.chat_id if parsed else None
        if chat_id:
            await self._send_fallback(chat_id)
        if pending:
            record = self.record
            if record is not None and record.pending_turn is not None:
                record = attrs.evolve(record, pending_turn=None)
            with trio.move_on_after(self.settings.whapi_timeout_seconds):
                await self.deps.store.inbox_done(
                    [e.message_id for e in pending], "failed:crash", record=record
                )

    # -- inspection --------------------------------------------------------------------------

    def phase(self) -> str:
        if self.paused():
            return "paused"
        if self.turn is not None:
            return self.turn.stage
        if self.buffer.messages:
            return "buffering"
        return "idle"

    def paused(self) -> bool:
        until = self.record.paused_until if self.record else None
        return until is not None and until > utcnow()

    def inspect(self, *, include_text: bool = False) -> dict[str, Any]:
        now = trio.current_time()
        record = self.record
        info: dict[str, Any] = {
            "user": self.key,
            "phase": self.phase(),
            "buffer": {
                "messages": len(self.buffer),
                "chars": self.buffer.chars,
                "age_seconds": round(now - self.buffer.first_at, 3)
                if self.buffer.messages
                else None,
                "due_in_seconds": _round(self._due() - now),
            },
            "typing": {
                "status": self.typing_status,
                "seconds_ago": _round(now - self.typing_at) if self.typing_at is not None else None,
            },
            "turn": None,
            "turns": self.turns,
            "flood_dropped": self.flood_dropped,
            "conversation_id": record.conversation_id if record else None,
            "paused_until": record.paused_until.isoformat()
            if record and record.paused_until
            else None,
            "pause": {
                "until": record.paused_until.isoformat(),
                "by": record.paused_by or "unknown",
            }
            if record and self.paused() and record.paused_until
            else None,
            "last_reply": self.last_reply,
            "last_activity": record.last_activity.isoformat() if record else None,
            "last_turn": self.last_turn,
            "retry_in_seconds": _round(self._retry_at - now) if self._retry_at else None,
        }
        if self.turn is not None:
            info["turn"] = {
                "id": self.turn.turn_id,
                "stage": self.turn.stage,
                "elapsed_seconds": round(now - self.turn.started_at, 3),
                "messages": len(self.turn.message_ids),
                "resumed": self.turn.resume is not None,
                "superseded": self.turn.superseded,
                "waiting_for_budget_since": _iso_or_none(self.turn.waiting_since),
            }
        if include_text:
            info["buffer"]["texts"] = [m.text for m in self.buffer.messages]
        return info

    # -- the loop ----------------------------------------------------------------------------

    async def _loop(self, mailbox: Mailbox) -> None:
        while True:
            # One cancel scope serves message after message: its deadline follows the buffer,
            # and a new one is entered only once it fired or was woken (a scope entered per
            # message was a tenth of wabot's own CPU per webhook). ``receive`` takes a message
            # only after its last checkpoint, so the deadline never loses one.
            with trio.CancelScope(deadline=self._due()) as scope:
                self._wake = scope
                try:
                    while True:
                        if self.cell.resync:
                            self.cell.resync = False
                            self._reload_pending()
                            self._maybe_start_turn()
                        due = self._due()
                        if due != scope.deadline:
                            scope.deadline = due
                        message = await mailbox.receive()
                        self._handle(message)
                        self._maybe_start_turn()
                except trio.EndOfChannel:
                    return
                finally:
                    self._wake = None
            self._maybe_start_turn()

    @property
    def timings(self) -> Timings:
        return timings_of(self.settings)

    def _due(self) -> float:
        """When the buffered messages should be answered (``inf``: nothing to do now)."""
        return due_at(
            self.buffer,
            self.timings,
            busy=self.turn is not None or self._closing,
            paused=bool(self.buffer.messages) and self.paused(),
            typing_at=self.typing_at,
            retry_at=self._retry_at,
        )

    def _handle(self, message: Any) -> None:
        if isinstance(message, InboundMessage):
            self._on_message(message)
        elif isinstance(message, Presence):
            self._on_presence(message)
        elif isinstance(message, AgentMessage):
            self._on_agent(message)
        elif isinstance(message, Control):
            self._in_background(self._control(message))
        else:
            raise TypeError(f"unexpected message for a user actor: {message!r}")

    def _on_message(self, message: InboundMessage) -> None:
        if message.message_id in self.buffer.ids or message.message_id in self._handled:
            return  # a redelivery, or a replayed entry we already hold
        if self.turn is not None and message.message_id in self.turn.message_ids:
            return
        if (
            self.key in self.settings.ignored_chats
            or message.chat_id in self.settings.ignored_chats
        ):
            self._handled[message.message_id] = None
            self._in_background(self._settle([message.message_id], "dropped:ignored"))
            return
        if self.paused():
            # A human agent has this chat: the bot stays out, but the model will know.
            self._handled[message.message_id] = None
            self._in_background(self._note_while_paused([message]))
            return
        if self.buffer.add(message, trio.current_time(), self.timings) is Added.DROPPED:
            self._drop_flood(message)
            return
        self.typing_status = None

    def _drop_flood(self, message: InboundMessage) -> None:
        self.flood_dropped += 1
        self.deps.telemetry.flood_dropped.inc()
        self._handled[message.message_id] = None
        log.warning("user %s: buffer full, message dropped under the flood rule", self.key)
        self._in_background(self._settle([message.message_id], "dropped:flood"))

    def _in_background(self, job: Coroutine[Any, Any, None]) -> None:
        """Run a short job in the actor's nursery; the actor is not idle until it is done."""
        assert self._nursery is not None
        self._background += 1

        async def runner() -> None:
            try:
                await job
            finally:
                self._background -= 1

        self._nursery.start_soon(runner)

    async def _control(self, command: Control) -> None:
        try:
            record = self.record or UserRecord.new(self.key, f"{self.key}@s.whatsapp.net", self.key)
            if command.action == "pause":
                seconds = command.seconds or self.settings.handoff_pause_seconds
                until = utcnow() + timedelta(seconds=seconds)
                record = attrs.evolve(record, paused_until=until, paused_by="operator")
            elif command.action == "resume":
                record = attrs.evolve(record, paused_until=None, paused_by=None)
            elif command.action == "reset":
                record = attrs.evolve(record, conversation_id=None, context_fingerprint=None)
            else:
                raise ValueError(f"unknown action {command.action!r}")
            await self.save(record)
            command.result.update(
                ok=True,
                user=self.key,
                action=command.action,
                paused_until=_iso_or_none(record.paused_until) if self.paused() else None,
                paused_by=record.paused_by if self.paused() else None,
                conversation_id=record.conversation_id,
            )
            log.info("user %s: operator %s", self.key, command.action)
        except Exception as exc:
            command.result.update(ok=False, error=str(exc))
        finally:
            command.done.set()
            if self._wake is not None:
                self._wake.cancel()

    def _on_presence(self, presence: Presence) -> None:
        if presence.status in {"typing", "recording"}:
            self.typing_at = trio.current_time()
        else:
            self.typing_at = None
        self.typing_status = presence.status

    def _on_agent(self, message: AgentMessage) -> None:
        if message.message_id in self._sent_ids or message.message_id in self._handled:
            return  # our own send (reported with a source other than "api"), or a redelivery
        self._handled[message.message_id] = None
        log.info("user %s: a human agent wrote from %s; the bot pauses", self.key, message.source)
        waiting, self.buffer = self.buffer.messages, Buffer()
        for pending in waiting:
            self._handled[pending.message_id] = None
        self._in_background(self._handoff(message, waiting))

    async def _handoff(self, message: AgentMessage, waiting: list[InboundMessage]) -> None:
        """Pause the bot for this chat and tell the model what the agent (and customer) said."""
        record = self.record or UserRecord.new(self.key, message.chat_id, self.key)
        until = utcnow() + timedelta(seconds=self.settings.handoff_pause_seconds)
        await self.save(attrs.evolve(record, paused_until=until, paused_by="agent"))
        await self._note_while_paused(waiting)
        await self._add_to_conversation(
            [
                {
                    "type": "message",
                    "role": "assistant",
                    "content": f"[{message.agent_name}, del equipo, escribió] {message.text}",
                }
            ]
        )

    async def _note_while_paused(self, messages: list[InboundMessage]) -> None:
        """Customer messages during a handoff: no answer, but kept in the conversation."""
        if not messages:
            return
        await self._add_to_conversation(
            [
                {
                    "type": "message",
                    "role": "user",
                    "content": "\n".join(m.text for m in messages),
                }
            ]
        )
        if self.record is not None:
            # lastActivity moves on every customer message, answered or not (the original
            # forgot this and then purged active customers as inactive).
            with contextlib.suppress(StoreUnavailable):
                await self.save(attrs.evolve(self.record, last_activity=utcnow()))
        await self._settle([m.message_id for m in messages], "dropped:paused")

    async def _add_to_conversation(self, items: list[dict[str, Any]]) -> None:
        record = self.record
        if record is None or not record.conversation_id:
            return  # nothing to add to: the customer never talked to the bot
        try:
            async with self.conversation_lock:
                with trio.fail_after(self.settings.turn_timeout_seconds):
                    try:
                        await self.deps.model.add_items(record.conversation_id, items)
                    except ConversationNotFound:
                        fresh = await self.replace_lost_conversation(record.conversation_id)
                        await self.deps.model.add_items(fresh, items)
        except Exception as exc:
            log.warning(
                "user %s: could not add handoff notes to the conversation: %r", self.key, exc
            )

    async def pause_for_handoff(self) -> None:
        """Called by ``escalate_to_human``: a human takes the chat from now on."""
        assert self.record is not None
        until = utcnow() + timedelta(seconds=self.settings.handoff_pause_seconds)
        await self.save(attrs.evolve(self.record, paused_until=until, paused_by="escalation"))

    def _activate(self, mailbox: Mailbox) -> None:
        """Buffer the unanswered messages of a customer whose actor (re)starts, oldest first.

        The durable inbox holds them all; the ones also waiting in the mailbox (the message
        that activated the actor, journaled and then delivered) are its newest, so they are
        taken from the mailbox as they are, after the older ones, instead of being parsed from
        the inbox again. After an overflow (``cell.resync``) order is not known that way: the
        inbox is read whole and the mailbox copies are redeliveries to ``_on_message``.
        """
        if self.cell.resync:
            self._reload_pending()
            return
        early: list[Any] = []
        with contextlib.suppress(trio.WouldBlock, trio.EndOfChannel):
            while True:
                early.append(mailbox.receive_nowait())
        delivered = {m.message_id for m in early if isinstance(m, InboundMessage)}
        self._reload_pending(skip=delivered)
        for message in early:
            self._handle(message)

    def _reload_pending(self, skip: set[str] | frozenset[str] = frozenset()) -> None:
        """Buffer the user's unanswered messages from the durable inbox, oldest first (on a
        resync after an overflow, a message also in the mailbox is buffered once: the copy
        that comes second is a redelivery to ``_on_message``)."""
        for entry in self.deps.store.pending_for(self.key):
            if entry.message_id in skip:
                continue
            event = self.deps.parse(entry.payload)
            if event is not None:
                self._on_message(event)

    # -- turns -------------------------------------------------------------------------------

    def _maybe_start_turn(self) -> None:
        if self._nursery is None or self._due() > trio.current_time():
            return
        if self.paused():
            waiting, self.buffer = self.buffer.messages, Buffer()
            for message in waiting:
                self._handled[message.message_id] = None
            self._in_background(self._note_while_paused(waiting))
            return
        resume = self._unfinished_turn()
        batch, ids = self.buffer.take(set(resume.message_ids) if resume else None)
        self._retry_at = None
        self.turns += 1
        self.turn = TurnState(f"{self.key}-{self.turns}", trio.current_time(), ids, resume=resume)
        log.info(
            "user %s: turn %s starts: %d message(s), %d chars%s",
            self.key,
            self.turn.turn_id,
            len(batch),
            sum(len(m.text) for m in batch),
            " (resumed)" if resume else "",
        )
        self._nursery.start_soon(self._run_turn, batch, self.turn)

    def _unfinished_turn(self) -> PendingTurn | None:
        """The turn a dead process (or a crashed actor) left unfinished, if it is resumable.

        Looked at once per activation: its messages are pending again, and answering them
        as that turn (the same input, on the same conversation) lets the model call recover
        the answer it may already have given instead of asking twice.
        """
        record = self.record
        if self._resume_checked or record is None or record.pending_turn is None:
            return None
        self._resume_checked = True
        intent = record.pending_turn
        if not any(message_id in self.buffer.ids for message_id in intent.message_ids):
            # Its messages were settled (say, by a fallback): forget it with the next write.
            self.record = attrs.evolve(record, pending_turn=None)
            return None
        log.info("user %s: resuming turn %s left unfinished by a restart", self.key, intent.turn_id)
        return intent

    def _defer(self, batch: list[InboundMessage], turn: TurnState) -> None:
        """Put a turn that a store outage stopped back in front of the buffer, for later.

        Its messages stay pending in the durable inbox; the next attempt waits
        ``retry_max_seconds``, doubling with each outage in a row up to the turn's deadline.
        """
        self._deferrals += 1
        delay = min(
            self.settings.retry_max_seconds * 2 ** (self._deferrals - 1),
            self.settings.turn_timeout_seconds,
        )
        self._retry_at = trio.current_time() + delay
        self.buffer.put_back(batch, turn.message_ids, trio.current_time())
        self._resume_checked = False  # the stored intent, if any, is still the one to resume
        log.warning(
            "user %s: turn %s waits for the store; retrying in %.1f s (messages stay pending)",
            self.key,
            turn.turn_id,
            delay,
        )

    async def _run_turn(self, batch: list[InboundMessage], turn: TurnState) -> None:
        with bind(turn=turn.turn_id):
            # Until the turn ends one way or the other, it was cancelled (a drain past its
            # grace period): its messages then stay pending, with its intent, for the next
            # process to resume.
            outcome, settled, error = "cancelled", None, None
            try:
                turn.stage = WAITING_FOR_SLOT
                async with self.deps.turn_slots:
                    turn.stage = "thinking"
                    turn.started_at = trio.current_time()
                    with trio.fail_after(self.settings.turn_timeout_seconds):
                        await TurnRunner(self, batch, turn).run()
                outcome, settled = "replied", "answered"
            except Exception as exc:
                error = repr(exc)
                if isinstance(exc, StoreUnavailable) or turn.stage == WAITING_FOR_STORE:
                    # Our own storage is down: the answer is delayed, never replaced.
                    outcome, settled = "deferred", None
                else:
                    outcome, settled = "fallback", "failed:fallback"
                    log.error("turn %s failed: %r", turn.turn_id, exc, exc_info=not _expected(exc))
                    turn.stage = "replying"
                    if not await self._send_fallback(batch[-1].chat_id):
                        outcome, settled = "failed", "failed:silent"
            finally:
                self.deps.telemetry.turns.labels(outcome).inc()
                self.deps.telemetry.turn_seconds.observe(trio.current_time() - turn.started_at)
                self._log_turn(turn, outcome, error)
                if outcome == "deferred":
                    self._defer(batch, turn)
                elif settled is not None:
                    self._deferrals = 0
                    record = self.record if turn.record_due else None
                    if self.record is not None and self.record.pending_turn is not None:
                        self.record = record = attrs.evolve(self.record, pending_turn=None)
                    self.deps.telemetry.settled.labels(settled).inc(len(turn.message_ids))
                    await self._settle(turn.message_ids, settled, record=record)
                self.turn = None
                if self._wake is not None:
                    self._wake.cancel()  # re-evaluate: a buffer may have become due mid-turn

    def _log_turn(self, turn: TurnState, outcome: str, error: str | None) -> None:
        """The turn's one INFO line (WARNING when it failed), and what inspection shows of it."""
        seconds = trio.current_time() - turn.started_at
        ended = utcnow().isoformat()
        self.last_turn = {
            "id": turn.turn_id,
            "outcome": outcome,
            "error": error,
            "ended_at": ended,
            "seconds": round(seconds, 3),
            "model_seconds": round(turn.model_seconds, 3),
            "tools": list(turn.tools),
            "cited": list(turn.cited),
            "parts_sent": turn.parts_sent,
            "resumed": turn.resume is not None,
            "superseded": turn.superseded,
        }
        if turn.parts_sent or turn.voice_sent:
            self.last_reply = {
                "at": ended,
                "parts": turn.parts_sent,
                "kind": "voice" if turn.voice_sent else "text",
            }
        level = logging.INFO if outcome in {"replied", "cancelled"} else logging.WARNING
        log.log(
            level,
            "user %s: turn %s %s in %.2f s (model %.2f s, tools: %s, parts sent: %d%s%s%s)%s",
            self.key,
            turn.turn_id,
            outcome,
            seconds,
            turn.model_seconds,
            ", ".join(turn.tools) or "none",
            turn.parts_sent,
            ", voice" if turn.voice_sent else "",
            f", cited: {', '.join(turn.cited)}" if turn.cited else "",
            f", superseded {turn.superseded}x" if turn.superseded else "",
            f": {error}" if error else "",
        )

    # -- what the turn asks of its actor ---------------------------------------------------------

    async def save(self, record: UserRecord) -> None:
        """Make ``record`` the actor's view at once, then store it durably.

        Setting it first means a concurrent update (an operator's pause during a turn, a
        presence subscription) evolves from this version instead of losing it; the store
        applies puts in order, so the last one carries every change.
        """
        self.record = record
        await self.deps.store.put(record)

    async def save_for_turn(self, record: UserRecord) -> None:
        """``save`` for a turn: a store outage makes the turn wait, it never fails it.

        Retried with backoff until the store takes the write or the turn's deadline ends
        the wait; then the turn is put off and its messages stay pending (``_defer``).
        """
        delay = self.settings.retry_base_seconds
        turn = self.turn
        stage = turn.stage if turn is not None else None
        try:
            await self.save(record)
            return
        except StoreUnavailable as exc:
            if turn is None:
                raise
            log.warning("user %s: the store is unavailable; the turn waits: %s", self.key, exc)
            turn.stage = WAITING_FOR_STORE
        while True:
            await trio.sleep(delay)
            delay = min(delay * 2, self.settings.retry_max_seconds)
            assert self.record is not None
            try:
                # The actor's current view holds this change and any made since.
                await self.deps.store.put(self.record)
            except StoreUnavailable:
                continue
            log.info("user %s: the store is back; the turn goes on", self.key)
            turn.stage = stage or "thinking"
            return

    def update_record(self, **changes: Any) -> UserRecord:
        """Change the actor's view of the record for the running turn (in memory): stored by
        the turn's next durable write (its intent) or with the settle of its messages."""
        assert self.record is not None
        self.record = attrs.evolve(self.record, **changes)
        if self.turn is not None:
            self.turn.record_due = True
        return self.record

    async def ensure_record(self, message: InboundMessage) -> UserRecord:
        """The customer's record, created in memory for a new customer (no write of its own:
        the turn's intent, stored before the model call, carries it)."""
        record = self.record
        if record is None:
            self.record = UserRecord.new(self.key, message.chat_id, message.user_name)
        elif record.chat_id != message.chat_id:
            self.record = attrs.evolve(record, chat_id=message.chat_id)
        else:
            return record
        if self.turn is not None:
            self.turn.record_due = True
        return self.record

    async def ensure_conversation(self, record: UserRecord) -> tuple[str, bool]:
        """The conversation id, and whether it is new (a new one gets the context block).

        A new id is kept in memory only: the turn stores its intent, which carries it, before
        the conversation is used. So a new customer's first turn costs three durable writes:
        the webhook's ack, the intent (record, conversation and input in one put) and the
        settle. The intent cannot join the ack (the conversation does not exist yet) nor the
        settle (it must be durable before the model call: ``actors.customer.turn._store_intent``). A
        crash in between leaves at most an empty conversation on OpenAI that nothing uses.
        """
        record = self.record or record
        if record.conversation_id and not session_expired(
            record, self.settings.session_expiry_seconds
        ):
            return record.conversation_id, False
        if record.conversation_id:
            log.info("user %s: session expired; starting a fresh conversation", self.key)
        elif record.legacy_thread_id:
            log.info("user %s: legacy thread (Assistants API is gone); new conversation", self.key)
        conversation_id = await self.deps.model.create_conversation(self.key)
        # Evolve the current view: the record may have changed during the call.
        self.update_record(conversation_id=conversation_id)
        return conversation_id, True

    async def replace_lost_conversation(self, lost_id: str) -> str:
        """A fresh conversation in place of ``lost_id``, which OpenAI no longer knows; stored
        before use, like every new conversation."""
        record = self.record
        assert record is not None
        if record.conversation_id and record.conversation_id != lost_id:
            return record.conversation_id  # already replaced meanwhile
        log.warning(
            "user %s: OpenAI no longer knows conversation %s; starting a fresh one",
            self.key,
            lost_id,
        )
        self.deps.telemetry.conversations_lost.inc()
        conversation_id = await self.deps.model.create_conversation(self.key)
        await self.save_for_turn(
            attrs.evolve(self.record or record, conversation_id=conversation_id)
        )
        return conversation_id

    async def reset_conversation(self) -> UserRecord:
        assert self.record is not None
        await self.save_for_turn(
            attrs.evolve(self.record, conversation_id=None, context_fingerprint=None)
        )
        log.info("user %s: conversation reset", self.key)
        return self.record

    def may_supersede(self, turn: TurnState) -> bool:
        """Whether ``turn`` gives way to the messages buffered since it started."""
        return may_supersede(
            self.buffer,
            self.timings,
            superseded=turn.superseded,
            committed=turn.committed,
            resumed=turn.resume is not None,
            reset_keywords=self._reset_keywords,
            taken_messages=len(turn.message_ids),
            taken_chars=turn.input_chars,
        )

    def supersede_due(self, turn: TurnState) -> float:
        """When the messages ``turn`` gives way to are due: as a buffer would be, no turn
        running, and at once when no more would fit beside the turn's own (``inf`` once none
        is waiting)."""
        if self.buffer.messages and self._fitting(turn) < len(self.buffer):
            return -math.inf
        return due_at(self.buffer, self.timings, typing_at=self.typing_at)

    def take_superseding(self, turn: TurnState) -> list[InboundMessage]:
        """The buffered messages that fit beside ``turn``'s own, now its own (settled with it),
        and one more give-way counted; none when a reset keyword is waiting, which stays for
        the next turn with whatever did not fit."""
        turn.superseded += 1
        if has_reset(self.buffer, self._reset_keywords):
            return []
        batch, ids = self.buffer.take_first(self._fitting(turn))
        turn.message_ids.extend(ids)
        return batch

    def _fitting(self, turn: TurnState) -> int:
        return fitting(
            self.buffer,
            self.timings,
            taken_messages=len(turn.message_ids),
            taken_chars=turn.input_chars,
        )

    @property
    def _reset_keywords(self) -> frozenset[str]:
        return frozenset(k.lower() for k in self.settings.reset_keywords)

    def remember_sent(self, message_id: str) -> None:
        self._sent_ids[message_id] = None

    async def _send_fallback(self, chat_id: str) -> bool:
        with trio.move_on_after(self.settings.whapi_timeout_seconds * 2):
            try:
                sent = await self.deps.whapi.send_text(chat_id, self.settings.fallback_text)
            except Exception as exc:
                log.error("user %s: even the fallback could not be sent: %r", self.key, exc)
                return False
            self.remember_sent(sent.message_id)
            return True
        log.error("user %s: the fallback send timed out", self.key)
        return False

    async def _settle(
        self, message_ids: list[str], outcome: str, *, record: UserRecord | None = None
    ) -> None:
        """Mark messages done in the durable inbox (shielded: a drain must not strand it).

        ``record`` (a turn's updated record) goes in the same write. If the store cannot write
        now, the marks are retried in the background while the store recovers; until then the
        messages stay pending (a restart would answer them again, which is the price of never
        losing one). The record is not retried: the actor's next save carries it.
        """
        for message_id in message_ids:
            self._handled[message_id] = None
        if (
            not await self._try_settle(message_ids, outcome, record=record)
            and self._nursery is not None
        ):
            self._in_background(self._settle_later(message_ids, outcome))

    async def _try_settle(
        self, message_ids: list[str], outcome: str, *, record: UserRecord | None = None
    ) -> bool:
        with trio.move_on_after(self.settings.whapi_timeout_seconds) as scope:
            scope.shield = True
            try:
                await self.deps.store.inbox_done(message_ids, outcome, record=record)
                return True
            except StoreUnavailable as exc:
                log.warning("user %s: could not mark messages done yet: %s", self.key, exc)
        return False

    async def _settle_later(self, message_ids: list[str], outcome: str) -> None:
        delay = 1.0
        with trio.move_on_after(self.settings.settle_retry_seconds):
            while True:
                await trio.sleep(delay)
                if await self._try_settle(message_ids, outcome):
                    return
                delay = min(delay * 2, 10.0)
        log.error(
            "user %s: %d messages stay pending (store unavailable)", self.key, len(message_ids)
        )

    async def keep_typing(self, chat_id: str, presence: str) -> None:
        await trio.sleep(self.settings.typing_delay_seconds)
        while True:
            await self.deps.whapi.set_presence(chat_id, presence)
            await trio.sleep(self.settings.typing_refresh_seconds)

    def subscribe_presence_if_due(self) -> None:
        """Once per activation, renew the presence subscription if it is old or missing.

        Done at a turn rather than on a first message: subscribing costs an HTTP call, and
        doing it for every activation made ingest pay for it (bench/RESULTS.md).
        """
        if self._subscribed or self._nursery is None:
            return
        self._subscribed = True
        since = self.record.presence_subscribed_at if self.record else None
        fresh = timedelta(seconds=self.settings.presence_resubscribe_seconds)
        if since is None or utcnow() - since > fresh:
            self._in_background(self._subscribe_presence())

    async def _subscribe_presence(self) -> None:
        with trio.move_on_after(self.settings.whapi_timeout_seconds):
            if await self.deps.whapi.subscribe_presence(self.key) and self.record is not None:
                # No write of its own: the turn's writes carry it. Should the actor retire
                # before any, the next activation subscribes again (Whapi takes a repeat).
                self.update_record(presence_subscribed_at=utcnow())


def _expected(exc: BaseException) -> bool:
    return isinstance(exc, ModelError | WhapiError | trio.TooSlowError)


def _round(value: float) -> float | None:
    return None if math.isinf(value) else round(value, 3)


def _iso_or_none(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
