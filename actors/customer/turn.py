"""One turn of a user actor: from a batch of buffered messages to the reply on WhatsApp.

In order: show "typing" (or "recording" when the answer will be a voice note) and keep it
alive; turn media into model input (transcripts, images); find or start the conversation
(a reset keyword or a long silence starts a fresh one; legacy Assistants threads too); add
the context block when it is due; call the model, running its tool calls for up to
``WABOT_TOOL_ROUNDS`` rounds (before a round of several calls that includes a tool with an
``interim`` message, that message goes to the customer, once per turn; with ``file_search``
over the business's documents when there is a vector store: the documents its answers cite
are kept for the turn's log line and inspection, the citation markers are stripped from the
text); let the validator correct the answer and ask for one correction; then send the answer
as a voice note when it suits speech, else as text parts paced with ``typing_time``.

The conversation lock of the actor is held from the first model call to the last, so what a
human agent writes meanwhile is added to the conversation before or after the turn, never
during it (OpenAI answers ``conversation_locked`` to concurrent writes).

When the customer writes again while the turn thinks (``WABOT_SUPERSEDE``), before any part of
its reply went out and before any tool ran, the turn gives way (``TurnRunner._superseded``;
the rule is ``buffering.may_supersede``): its answer is never sent and is taken back from the
conversation, and the same turn asks again with the earlier messages and the new ones, at
most ``WABOT_SUPERSEDE_MAX`` times; its stored intent then names them all.
"""

from __future__ import annotations

import base64
import logging
import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

import attrs
import trio

from actors.customer.context import context_block, developer_note, fingerprint, needs_context
from actors.customer.deps import UserDeps
from actors.customer.events import InboundMessage
from actors.customer.media import (
    MediaError,
    PreparedInput,
    data_url,
    describe_failure,
    voice_filename,
)
from actors.customer.replies import split_parts, to_whatsapp, typing_time
from actors.settings import Settings
from actors.tools import ToolContext
from actors.upstream.model import (
    ConversationNotFound,
    ModelError,
    ModelReply,
    function_output,
    user_message,
)
from actors.upstream.whapi import WhapiError
from actors.validation import ToolOutput, as_verdict
from actors.voice.audio import AudioError, speakable
from store import UserRecord
from store.records import PendingTurn, utcnow

log = logging.getLogger("actors.customer.turn")


@attrs.define
class TurnState:
    """One turn as its actor and inspection see it: its messages, stage and what it did."""

    turn_id: str
    started_at: float
    message_ids: list[str]
    stage: str = "thinking"
    #: The turn updated the actor's record; it is stored when the turn's messages are settled.
    record_due: bool = False
    #: The stored intent of a turn a dead process left unfinished, which this turn resumes.
    resume: PendingTurn | None = None
    #: What the turn did, for its log line and inspection.
    model_seconds: float = 0.0
    tools: list[str] = attrs.Factory(list)
    #: The business's documents its answers cited (file names, first citation first).
    cited: list[str] = attrs.Factory(list)
    parts_sent: int = 0
    voice_sent: bool = False
    #: A tool's interim message went to the customer (at most one per turn; not a reply part).
    interim_sent: bool = False
    #: Since when its model call waits for the rate-limit budget (None: it does not).
    waiting_since: datetime | None = None
    #: Times it gave way to the customer's later messages (``WABOT_SUPERSEDE``).
    superseded: int = 0
    #: Its reply started going out, or a tool ran: it no longer gives way.
    committed: bool = False
    #: The length of its input's text (what a give-way adds to must fit the buffer's caps).
    input_chars: int = 0


class TurnHost(Protocol):
    """What a turn needs from the actor that owns the customer's record (``UserActor``).

    The actor is the record's one writer: a turn reads ``record`` and changes it only through
    ``update_record`` (in memory, stored with the turn's settle or its next durable write) or
    the methods below that store it; it never assigns the record itself.
    """

    key: str
    settings: Settings
    deps: UserDeps
    #: When the validator last asked for a correction (its cooldown is per customer).
    validated_at: float | None

    @property
    def record(self) -> UserRecord | None: ...

    @property
    def conversation_lock(self) -> trio.Lock: ...

    def update_record(self, **changes: Any) -> UserRecord: ...

    async def save_for_turn(self, record: UserRecord) -> None: ...

    async def ensure_record(self, message: InboundMessage) -> UserRecord: ...

    async def ensure_conversation(self, record: UserRecord) -> tuple[str, bool]: ...

    async def replace_lost_conversation(self, lost_id: str) -> str: ...

    async def reset_conversation(self) -> UserRecord: ...

    def subscribe_presence_if_due(self) -> None: ...

    async def keep_typing(self, chat_id: str, presence: str) -> None: ...

    def remember_sent(self, message_id: str) -> None: ...

    async def pause_for_handoff(self) -> None: ...

    def may_supersede(self, turn: TurnState) -> bool: ...

    def supersede_due(self, turn: TurnState) -> float: ...

    def take_superseding(self, turn: TurnState) -> list[InboundMessage]: ...


@attrs.frozen
class Answer:
    text: str
    tool_outputs: tuple[ToolOutput, ...] = ()


class TurnRunner:
    """The pipeline for one batch; short-lived, created by the actor for each turn."""

    def __init__(self, actor: TurnHost, batch: list[InboundMessage], turn: TurnState) -> None:
        self.actor = actor
        self.deps = actor.deps
        self.settings = actor.settings
        self.batch = batch
        self.turn = turn
        self.last = batch[-1]

    async def run(self) -> None:
        actor, settings, last = self.actor, self.settings, self.last
        voice_reply = settings.voice_replies and last.is_voice
        async with trio.open_nursery() as indicator:
            # First, so that a customer whose turn waits (for the store, the model) sees it.
            indicator.start_soon(
                actor.keep_typing, last.chat_id, "recording" if voice_reply else "typing"
            )
            record = await actor.ensure_record(last)
            actor.subscribe_presence_if_due()
            batch = self.batch if self.turn.resume else self._after_reset(record)
            if batch is None:
                await actor.reset_conversation()
                await self.send_text(settings.reset_reply)
                indicator.cancel_scope.cancel()
                return
            if len(batch) < len(self.batch):
                record = await actor.reset_conversation()
            prepared = await self.prepare(batch)
            if self.turn.resume is not None:
                # The very input the dead process sent, so that its answer can be found.
                prepared = attrs.evolve(prepared, text=self.turn.resume.input_text)
            async with actor.conversation_lock:
                answer = await self.converse(record, prepared)
            self.turn.stage, self.turn.committed = "replying", True
            text = to_whatsapp(answer.text)
            if not text:
                raise ModelError("the model returned an empty answer")
            # The last message may be a later one, if the turn gave way to it.
            voice_reply = settings.voice_replies and self.last.is_voice
            if not (voice_reply and await self.send_voice(text)):
                await self.send_text(text)
            indicator.cancel_scope.cancel()
        now = utcnow()
        assert actor.record is not None
        # Stored with the marks that settle this turn's messages, in one write (the actor's
        # ``_settle``). Should that write fail, the customer has the answer all the same: the
        # actor keeps this view, and its next successful save carries it.
        actor.update_record(last_activity=now, last_turn_at=now, user_name=self.last.user_name)

    def _after_reset(self, record: UserRecord) -> list[InboundMessage] | None:
        """The messages after the last reset keyword; None when the batch was only a reset."""
        keywords = {k.lower() for k in self.settings.reset_keywords}
        for index in range(len(self.batch) - 1, -1, -1):
            if self.batch[index].text.strip().lower() in keywords:
                rest = self.batch[index + 1 :]
                return rest or None
        return self.batch

    # -- input ---------------------------------------------------------------------------------

    async def prepare(self, batch: Sequence[InboundMessage]) -> PreparedInput:
        """Text in arrival order (voice transcribed), and the images to show the model."""
        lines: list[str] = []
        images: list[str] = []
        for message in batch:
            if message.is_voice and message.media is not None:
                lines.append(await self._transcribe(message))
            elif message.kind == "image" and message.media is not None:
                url = await self._image(message)
                if url is None:
                    lines.append(describe_failure(message))
                else:
                    images.append(url)
                    lines.append(message.text)
            else:
                lines.append(message.text)
        return PreparedInput("\n".join(lines), tuple(images), any(m.is_voice for m in batch))

    async def _transcribe(self, message: InboundMessage) -> str:
        assert message.media is not None
        try:
            downloaded = await self.deps.media.fetch(message.media)
            text = await self.deps.audio.transcribe(
                downloaded.content, voice_filename(downloaded.mime_type), downloaded.mime_type
            )
        except (MediaError, AudioError) as exc:
            log.warning("voice note %s: %s", message.message_id, exc)
            return describe_failure(message)
        return f"[nota de voz] {text}" if text else "[nota de voz sin palabras]"

    async def _image(self, message: InboundMessage) -> str | None:
        assert message.media is not None
        if not self.settings.image_inline and message.media.link:
            return message.media.link
        try:
            return data_url(await self.deps.media.fetch(message.media))
        except MediaError as exc:
            log.warning("image %s: %s", message.message_id, exc)
            return None

    # -- the model -----------------------------------------------------------------------------

    async def converse(self, record: UserRecord, prepared: PreparedInput) -> Answer:
        """The answer: ask, run the tools, validate; and ask again, with everything, each time
        the turn gives way to the customer's later messages (``_superseded``)."""
        while True:
            self.turn.input_chars = len(prepared.text)
            conversation_id, reply = await self._ask(record, prepared)
            more = await self._superseded(conversation_id, prepared)
            if more is None:
                answer = await self._tool_loop(conversation_id, reply)
                answer = await self._validated(conversation_id, answer)
                more = await self._superseded(conversation_id, prepared)
                if more is None:
                    return answer
            prepared = more

    async def _ask(self, record: UserRecord, prepared: PreparedInput) -> tuple[str, ModelReply]:
        """The turn's first model call, on its conversation (a lost one is replaced)."""
        actor, resume = self.actor, self.turn.resume
        current = actor.record or record
        if resume is not None and current.conversation_id == resume.conversation_id:
            conversation_id, fresh = resume.conversation_id, False
        else:
            resume = None
            conversation_id, fresh = await actor.ensure_conversation(record)
        items = await self._input(prepared, fresh)
        try:
            if resume is None:
                await self._store_intent(conversation_id, prepared.text)
            else:
                # The intent may be in memory only (its write failed in a store outage and the
                # turn was put off): durable before the model call, as for a fresh turn.
                assert actor.record is not None
                await actor.save_for_turn(actor.record)
            reply = await self._respond(conversation_id, items, resumed=resume is not None)
        except ConversationNotFound:
            # Deleted or expired on OpenAI's side, or the key now belongs to another project:
            # this turn goes on in a fresh conversation, seeded like one after a long silence.
            conversation_id = await actor.replace_lost_conversation(conversation_id)
            items = await self._input(prepared, fresh=True, lost=True)
            await self._store_intent(conversation_id, prepared.text)
            reply = await self._respond(conversation_id, items)
        return conversation_id, reply

    async def _superseded(
        self, conversation_id: str, prepared: PreparedInput
    ) -> PreparedInput | None:
        """The input of the ask that supersedes this one, when the customer wrote meanwhile.

        The response of the abandoned ask is not cancelled on OpenAI: ``responses.cancel``
        works only for responses created with ``background=true``, and a foreground one runs
        to completion on OpenAI's side whatever the client does, holding the conversation
        (``conversation_locked``) until then, so a newer ask could not start sooner anyway.
        Instead the turn lets it finish, never sends its output, and takes it back from the
        conversation (``ModelClient.discard_turn``: its input and all after it deleted), so
        the conversation says only what the customer saw. Then, once the new messages are
        due as a buffer would be (the quiet window after the latest), the turn takes them
        and asks with the earlier messages and the new ones together; ``_store_intent`` makes
        that the stored intent before the call, so a crash resumes this ask, not the first.

        None (the turn goes on with its answer) when the rule says no, or when the
        conversation keeps the answer (a delete failed): that answer is then the one given,
        it goes out, and the new messages get the next turn as without supersede.
        """
        actor, turn, telemetry = self.actor, self.turn, self.deps.telemetry
        if not actor.may_supersede(turn):
            return None
        if not await self.deps.model.discard_turn(conversation_id, prepared.text):
            turn.committed = True  # the conversation has this answer: it is the one given
            telemetry.supersedes.labels("kept").inc()
            log.warning("the customer wrote meanwhile, but the answer stays in the conversation")
            return None
        await self._quiet_window()
        batch = actor.take_superseding(turn)
        telemetry.supersedes.labels("done").inc()
        log.info(
            "turn gives way to %d later message(s) (%d of at most %d); one answer for all",
            len(batch),
            turn.superseded,
            self.settings.supersede_max,
        )
        if not batch:
            return prepared  # a reset keyword came meanwhile: it is the next turn's
        self.batch = [*self.batch, *batch]
        self.last = batch[-1]
        more = await self.prepare(batch)
        return PreparedInput(
            f"{prepared.text}\n{more.text}",
            (*prepared.image_urls, *more.image_urls),
            prepared.had_voice or more.had_voice,
        )

    async def _quiet_window(self) -> None:
        """Wait until the messages that supersede the turn are due, as a buffer would be."""
        while True:
            due, now = self.actor.supersede_due(self.turn), trio.current_time()
            if math.isinf(due) or due <= now:
                return
            await trio.sleep(min(due - now, QUIET_POLL_SECONDS))

    async def _store_intent(self, conversation_id: str, text: str) -> None:
        """Make the turn's intent durable before its model call (``PendingTurn``).

        The one write a turn adds for its own sake: without it, a process that dies between
        the model call and the settle leaves the next process no way to tell that the input
        was already sent, and it would be asked (and maybe answered) twice.
        """
        actor = self.actor
        assert actor.record is not None
        intent = PendingTurn(
            turn_id=self.turn.turn_id,
            message_ids=tuple(self.turn.message_ids),
            conversation_id=conversation_id,
            input_text=text,
            started_at=utcnow(),
        )
        await actor.save_for_turn(attrs.evolve(actor.record, pending_turn=intent))

    async def _input(
        self, prepared: PreparedInput, fresh: bool, *, lost: bool = False
    ) -> list[dict[str, Any]]:
        """The turn's input items: the context note when due, then the customer's message."""
        items: list[dict[str, Any]] = []
        note = await self._context_note(fresh, lost=lost)
        if note is not None:
            items.append(developer_note(note))
        items.append(user_message(prepared.text, prepared.image_urls))
        return items

    async def _context_note(self, fresh: bool, *, lost: bool = False) -> str | None:
        actor, settings, last = self.actor, self.settings, self.last
        info = await self.deps.chat_info.get(last.chat_id)
        record = actor.record
        assert record is not None
        name = info.name if info and info.name else record.name
        labels = info.labels if info else record.labels
        fp = fingerprint(name, labels)
        now = utcnow()
        if not fresh and not needs_context(record, fp, now, settings.context_gap_seconds):
            return None
        note = context_block(
            now=now, tz=settings.timezone, user_id=actor.key, profile_name=last.user_name, info=info
        )
        if lost:
            note += "\nEl historial de la conversación anterior con este cliente se perdió"
            if record.last_turn_at is not None:
                note += f" (su último turno fue el {record.last_turn_at:%Y-%m-%d})"
            note += "; si el cliente se refiere a algo anterior, pídele que lo recuerde."
        elif fresh and record.last_turn_at is not None:
            note += f"\nLa conversación anterior terminó el {record.last_turn_at:%Y-%m-%d}."
        actor.update_record(
            name=name, labels=tuple(labels), context_fingerprint=fp, context_sent_at=now
        )
        return note

    async def _respond(
        self,
        conversation_id: str,
        items: list[dict[str, Any]],
        *,
        tools: bool = True,
        resumed: bool = False,
    ) -> ModelReply:
        deps, turn = self.deps, self.turn
        stage = turn.stage
        turn.stage, turn.waiting_since = WAITING_FOR_BUDGET, utcnow()
        async with deps.budget.slot(self.actor.key, estimated_tokens(items)) as slot:
            turn.stage, turn.waiting_since = stage, None
            deps.telemetry.budget_wait_seconds.observe(slot.waited)
            started = trio.current_time()
            try:
                with deps.telemetry.model_seconds.time():
                    reply = await deps.model.respond(
                        conversation_id=conversation_id,
                        input_items=items,
                        user_id=self.actor.key,
                        tools=self._tools() if tools else (),
                        resumed=resumed,
                    )
                if reply.tokens is not None:
                    slot.used(reply.tokens)
            finally:
                turn.model_seconds += trio.current_time() - started
        if reply.searched:
            turn.tools.append("file_search")
        for citation in reply.citations:
            if citation.filename not in turn.cited:
                turn.cited.append(citation.filename)
        return reply

    def _tools(self) -> list[dict[str, Any]]:
        """The business's function tools, and ``file_search`` over its documents if any."""
        schemas = self.deps.tools.schemas()
        knowledge = self.deps.knowledge
        search = knowledge.tool() if knowledge is not None else None
        return [*schemas, search] if search is not None else schemas

    async def _tool_loop(self, conversation_id: str, reply: ModelReply) -> Answer:
        """Run the tool calls of ``reply`` (the turn's first answer), round after round."""
        settings, actor, last = self.settings, self.actor, self.last
        outputs: list[ToolOutput] = []
        context = ToolContext(
            user_id=actor.key,
            chat_id=last.chat_id,
            customer_name=(actor.record.name if actor.record else None) or last.user_name,
            settings=settings,
            whapi=self.deps.whapi,
            pause=actor.pause_for_handoff,
        )
        rounds = 0
        if reply.calls:
            self.turn.committed = True  # a tool's effect cannot be taken back
        while reply.calls:
            rounds += 1
            last_round = rounds >= settings.tool_rounds
            await self._send_interim([call.name for call in reply.calls])
            results = []
            for call in reply.calls:
                self.turn.tools.append(call.name)
                result = await self.deps.tools.call(
                    call.name, call.arguments, context, seconds=settings.tool_timeout_seconds
                )
                self.deps.telemetry.tool_calls.labels(
                    call.name, "ok" if result.ok else "error"
                ).inc()
                outputs.append(ToolOutput(call.name, call.arguments, result.output, result.ok))
                results.append(function_output(call, result.output))
            if last_round:
                results.append(
                    developer_note("Límite de herramientas alcanzado: responde ya al cliente.")
                )
            reply = await self._respond(conversation_id, results, tools=not last_round)
        return Answer(reply.text, tuple(outputs))

    async def _send_interim(self, names: list[str]) -> None:
        """A tool's interim message before a round of several calls, once per turn."""
        if self.turn.interim_sent:
            return
        text = self.deps.tools.interim(names)
        if not text:
            return
        self.turn.interim_sent = True
        try:
            if await self._went_out("text", text):
                return
            sent = await self.deps.whapi.send_text(self.last.chat_id, text)
        except WhapiError as exc:  # only a courtesy: the answer follows anyway
            self.deps.telemetry.sends.labels("text", "error").inc()
            log.warning("interim message not sent: %s", exc)
            return
        self.deps.telemetry.sends.labels("text", "ok").inc()
        self.actor.remember_sent(sent.message_id)

    async def _validated(self, conversation_id: str, answer: Answer) -> Answer:
        """The answer as the validator corrects it, after at most one re-ask per cool-down."""
        validator, actor = self.deps.validator, self.actor
        if validator is None:
            return answer
        first = as_verdict(validator(answer.text, answer.tool_outputs))
        corrected = Answer(first.text or answer.text, answer.tool_outputs)
        if first.text:
            log.info("validator corrected the answer in place")
        if not first.instruction:
            return corrected
        now = trio.current_time()
        if actor.validated_at is not None and now - actor.validated_at < (
            self.settings.validator_cooldown_seconds
        ):
            log.info(
                "validator found %d problem(s); no re-ask within the cool-down", len(first.problems)
            )
            return corrected
        actor.validated_at = now
        log.info("validator asked for a correction: %s", "; ".join(first.problems))
        reply = await self._respond(
            conversation_id, [developer_note(first.instruction)], tools=False
        )
        if not reply.text:
            return corrected
        second = as_verdict(validator(reply.text, answer.tool_outputs))
        if len(second.problems) > len(first.problems):
            log.info("the corrected answer is worse than the first; sending the first")
            return corrected
        return Answer(second.text or reply.text, answer.tool_outputs)

    # -- sending -------------------------------------------------------------------------------

    async def send_text(self, text: str) -> None:
        settings, deps = self.settings, self.deps
        for index, part in enumerate(split_parts(text, settings.max_part_chars)):
            if index:
                await trio.sleep(settings.part_pause_seconds)
            seconds = typing_time(
                part,
                minimum=settings.typing_time_min,
                maximum=settings.typing_time_max,
                chars_per_second=settings.typing_chars_per_second,
            )
            if await self._went_out("text", part):
                continue
            try:
                sent = await deps.whapi.send_text(self.last.chat_id, part, typing_time=seconds)
            except Exception:
                deps.telemetry.sends.labels("text", "error").inc()
                raise
            deps.telemetry.sends.labels("text", "ok").inc()
            self.turn.parts_sent += 1
            self.actor.remember_sent(sent.message_id)

    async def send_voice(self, text: str) -> bool:
        """Send ``text`` as a voice note; False (send text instead) when it should not or cannot."""
        settings, deps = self.settings, self.deps
        if not speakable(
            text, patterns=settings.voice_text_patterns, max_chars=settings.voice_max_chars
        ):
            return False
        if await self._went_out("voice", None):
            return True
        try:
            audio = await deps.synthesizer.synthesize(text)
            if deps.shelf is not None and settings.public_url:
                media = f"{settings.public_url}/audio/{await deps.shelf.put(audio)}"
            else:
                media = f"data:audio/ogg;base64,{base64.b64encode(audio).decode('ascii')}"
            sent = await deps.whapi.send_voice(self.last.chat_id, media)
        except Exception as exc:  # synthesis or send: the text goes out instead
            deps.telemetry.sends.labels("voice", "error").inc()
            log.warning("voice reply failed, sending text instead: %r", exc)
            return False
        deps.telemetry.sends.labels("voice", "ok").inc()
        self.turn.voice_sent = True
        self.actor.remember_sent(sent.message_id)
        return True

    async def _went_out(self, kind: str, text: str | None) -> bool:
        """In a resumed turn: did the dead process already send this part? (chat history)"""
        resume = self.turn.resume
        if resume is None:
            return False
        since = resume.started_at.timestamp() - HISTORY_SLACK_SECONDS
        try:
            found = await self.deps.whapi.find_sent(
                self.last.chat_id, text=text, since=since, kind=kind
            )
        except WhapiError as exc:
            log.warning("could not read the chat's history to resume a turn: %s", exc)
            return False
        if found is None:
            return False
        log.info("resumed turn: a %s part went out before the restart; not sending it again", kind)
        self.actor.remember_sent(found)
        return True


#: How often a superseded turn looks again whether the customer's new messages are due.
QUIET_POLL_SECONDS = 0.25

#: Whapi stamps messages in whole seconds by its own clock: look a little before the intent.
HISTORY_SLACK_SECONDS = 2


#: The stage of a turn whose model call waits for the OpenAI rate-limit budget.
WAITING_FOR_BUDGET = "waiting for the model budget"
#: Tokens a reply and the conversation's history add to a call's input, for the budget's
#: estimate before the call (OpenAI counts the real use; the estimate only orders the queue).
REPLY_TOKENS_ESTIMATE = 1000


def estimated_tokens(items: list[dict[str, Any]]) -> int:
    """A call's tokens as the budget estimates them: about four characters a token."""
    return len(str(items)) // 4 + REPLY_TOKENS_ESTIMATE


def session_expired(record: UserRecord, seconds: float) -> bool:
    if seconds <= 0 or record.last_turn_at is None:
        return False
    return utcnow() - record.last_turn_at > timedelta(seconds=seconds)
