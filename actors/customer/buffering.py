"""When to answer: a customer's buffered messages and the rules that make them due.

Pure data and functions, no trio and no I/O: times are plain floats on whatever clock the
caller uses (the actor passes ``trio.current_time()``), so every rule is unit-tested with
numbers. The actor owns one ``Buffer``; it ``add``s each message, asks ``due_at`` when to
answer, and ``take``s the batch when it starts a turn.

The rules, in order:

* nothing buffered, a turn running or the actor closing: never (``inf``);
* the chat is paused, or the buffer is full (``max_buffered`` messages or
  ``max_buffered_chars`` characters): at once (``-inf``);
* otherwise the quiet window after the latest message (``voice_buffer_seconds`` after a voice
  note, else ``buffer_seconds``), pushed back while the customer is typing or recording
  (``typing_seconds`` after the latest presence), but never past ``max_wait_seconds`` after
  the first message; and not before ``retry_at`` when a store outage put the last attempt off.

And the rule of when a running turn gives way (``may_supersede``): messages that arrived while
it thinks supersede it, so that one turn answers them all, while ``supersede`` is on, nothing
of its reply has gone out and no tool has run (``committed``), it is no turn resumed after a
restart, it gave way fewer than ``supersede_max`` times, no waiting message is a reset
keyword (a reset is a turn of its own), and a waiting message fits beside the turn's own under
``max_buffered`` and ``max_buffered_chars`` (``fitting``: one model call's input stays within
the caps of one buffer; what does not fit waits for the next turn).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Hashable
from enum import Enum

import attrs

from actors.customer.events import InboundMessage


@attrs.frozen
class Timings:
    """The buffering settings (``actors.settings.Settings`` has them under the same names)."""

    buffer_seconds: float
    voice_buffer_seconds: float
    typing_seconds: float
    max_wait_seconds: float
    max_buffered: int
    max_buffered_chars: int
    supersede: bool = True
    supersede_max: int = 2


@functools.lru_cache(maxsize=8)
def timings_of(settings: Hashable) -> Timings:
    """The buffering timings of a settings object (cached: one per deployment's settings)."""
    return Timings(**{f.name: getattr(settings, f.name) for f in attrs.fields(Timings)})


class Added(Enum):
    """What ``Buffer.add`` did with a message."""

    #: A new entry of the batch.
    APPENDED = "appended"
    #: Past ``max_buffered`` messages: its text was joined to the last entry.
    MERGED = "merged"
    #: No room left under ``max_buffered_chars``: dropped (the flood rule).
    DROPPED = "dropped"


@attrs.define
class Buffer:
    """The messages waiting for the next turn, oldest first."""

    messages: list[InboundMessage] = attrs.Factory(list)
    #: Every id the batch answers, merged ones included (a dict of str keys is not tracked
    #: by the cycle collector, which walks every live actor).
    ids: dict[str, None] = attrs.Factory(dict)
    chars: int = 0
    first_at: float = 0.0
    last_at: float = 0.0
    last_voice: bool = False

    def __len__(self) -> int:
        return len(self.messages)

    def add(self, message: InboundMessage, now: float, timings: Timings) -> Added:
        """Buffer ``message`` under the size caps (a single huge text is cut to the room)."""
        if not self.messages:
            self.first_at = now
        merge = len(self.messages) >= timings.max_buffered
        room = timings.max_buffered_chars - self.chars - (1 if merge else 0)  # the "\n"
        if room <= 0:
            return Added.DROPPED
        text = message.text[:room]
        if merge:
            last = self.messages[-1]
            self.messages[-1] = attrs.evolve(last, text=f"{last.text}\n{text}")
            self.chars += len(text) + 1
            added = Added.MERGED
        else:
            self.messages.append(
                message if text == message.text else attrs.evolve(message, text=text)
            )
            self.chars += len(text)
            added = Added.APPENDED
        self.ids[message.message_id] = None
        self.last_at = now
        self.last_voice = message.is_voice
        return added

    def take(self, only: set[str] | None = None) -> tuple[list[InboundMessage], list[str]]:
        """Remove and return the batch (``only`` those ids, if given) and its sorted ids."""
        if only is None:
            batch, ids = self.messages, sorted(self.ids)
            self.messages, self.ids, self.chars = [], {}, 0
            return batch, ids
        batch = [m for m in self.messages if m.message_id in only]
        self.messages = [m for m in self.messages if m.message_id not in only]
        self.chars = sum(len(m.text) for m in self.messages)
        taken = sorted(i for i in self.ids if i in only)
        self.ids = {i: None for i in self.ids if i not in only}
        if self.messages:
            self.last_voice = self.messages[-1].is_voice
        return batch, taken

    def take_first(self, count: int) -> tuple[list[InboundMessage], list[str]]:
        """Remove and return the ``count`` oldest entries (all of them: the whole batch)."""
        if count >= len(self.messages):
            return self.take()
        return self.take({m.message_id for m in self.messages[:count]})

    def put_back(self, batch: list[InboundMessage], ids: list[str], now: float) -> None:
        """Return a batch that could not be answered in front of what arrived since."""
        later, later_ids = self.messages, self.ids
        self.messages = [*batch, *later]
        self.ids = {i: None for i in [*ids, *later_ids]}
        self.chars = sum(len(m.text) for m in self.messages)
        self.first_at = self.last_at = now
        if self.messages:
            self.last_voice = self.messages[-1].is_voice


def due_at(
    buffer: Buffer,
    timings: Timings,
    *,
    busy: bool = False,
    paused: bool = False,
    typing_at: float | None = None,
    retry_at: float | None = None,
) -> float:
    """When ``buffer`` should be answered: a time, ``-inf`` (now) or ``inf`` (not now).

    ``busy``: a turn is running or the actor is closing. ``typing_at``: the customer's latest
    typing/recording presence. ``retry_at``: the earliest retry after a store outage.
    """
    if busy or not buffer.messages:
        return math.inf
    if paused:
        return -math.inf  # a pause began with messages waiting: settle them now
    if len(buffer) >= timings.max_buffered or buffer.chars >= timings.max_buffered_chars:
        return -math.inf
    window = timings.voice_buffer_seconds if buffer.last_voice else timings.buffer_seconds
    due = buffer.last_at + window
    if typing_at is not None and typing_at > buffer.last_at:
        due = max(due, typing_at + timings.typing_seconds)
    due = min(due, buffer.first_at + timings.max_wait_seconds)
    if retry_at is not None:
        due = max(due, retry_at)
    return due


def may_supersede(
    buffer: Buffer,
    timings: Timings,
    *,
    superseded: int,
    committed: bool,
    resumed: bool = False,
    reset_keywords: frozenset[str] = frozenset(),
    taken_messages: int = 0,
    taken_chars: int = 0,
) -> bool:
    """Whether a running turn gives way to one that also answers the messages in ``buffer``.

    ``superseded``: how many times the turn gave way already. ``committed``: a part of its
    reply started going out, or a tool ran (a tool's effect, such as a handoff, cannot be
    taken back). ``resumed``: the turn resumes one a dead process left unfinished (its input
    may already be answered on OpenAI; it is finished as it was). ``reset_keywords``: in
    lower case; a waiting reset is left for the next turn. ``taken_messages`` and
    ``taken_chars``: the turn's own messages and input (see ``fitting``).
    """
    if not timings.supersede or not buffer.messages or committed or resumed:
        return False
    if superseded >= timings.supersede_max:
        return False
    if fitting(buffer, timings, taken_messages=taken_messages, taken_chars=taken_chars) == 0:
        return False
    return not has_reset(buffer, reset_keywords)


def fitting(buffer: Buffer, timings: Timings, *, taken_messages: int, taken_chars: int) -> int:
    """How many of the oldest buffered messages fit beside a turn's own ``taken_messages``
    messages and ``taken_chars`` characters of input, under the caps of one buffer (each
    joined with a newline)."""
    count, chars = 0, taken_chars
    for message in buffer.messages:
        chars += len(message.text) + 1
        if taken_messages + count + 1 > timings.max_buffered or chars > timings.max_buffered_chars:
            break
        count += 1
    return count


def has_reset(buffer: Buffer, reset_keywords: frozenset[str]) -> bool:
    """Whether a buffered message is a reset keyword (``reset_keywords`` in lower case)."""
    return any(m.text.strip().lower() in reset_keywords for m in buffer.messages)
