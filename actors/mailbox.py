"""An actor's mailbox: a bounded FIFO with one consumer, built on trio's low-level waiting.

It does what the actor runtime needs of ``trio.open_memory_channel`` (``send_nowait``
raising ``WouldBlock`` when full, ``send`` waiting for space, ``close`` ending the consumer's
loop once the queued messages are read, ``receive`` raising ``EndOfChannel``) in one
GC-tracked object while empty and two with messages queued, instead of about ten (a channel
pair, its shared state, two deques, three sets and two ordered dicts). An idle actor is
mostly its mailbox, and every tracked object of every live actor is walked by each full
garbage collection (and counted in its memory): with it, the runtime's idle actor went from
28 to 18 tracked objects and from 6.3 KiB to 4.0 KiB (bench/RESULTS.md).

One task receives at a time (the actor); any number may send. A message sent while the
receiver waits is handed to it directly. A message is never out of sight: from ``send`` until
``receive`` returns it, it counts in ``statistics().buffered`` (the supervisor retires only
actors whose mailbox is empty, and would otherwise retire one holding a message in transit).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import attrs
import trio
from outcome import Error, Value
from trio.lowlevel import (
    Abort,
    Task,
    cancel_shielded_checkpoint,
    checkpoint,
    checkpoint_if_cancelled,
    current_task,
    reschedule,
    wait_task_rescheduled,
)


@attrs.frozen
class MailboxStatistics:
    #: Sent and not yet returned by ``receive``: queued, or handed to the waking receiver.
    buffered: int
    waiting_senders: int
    closed: bool


class Mailbox:
    """A bounded mailbox; ``capacity`` messages may wait in it (0: only direct hand-over)."""

    __slots__ = ("_capacity", "_closed", "_handed", "_items", "_receiver", "_senders")

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError("capacity must be >= 0")
        self._capacity = capacity
        #: Queued messages; made on first use (an empty deque already holds a 528-byte block,
        #: and most mailboxes are empty most of the time: the receiver takes messages directly).
        self._items: deque[Any] | None = None
        self._receiver: Task | None = None
        #: Tasks blocked in ``send`` with their message, in arrival order; created when needed.
        self._senders: dict[Task, Any] | None = None
        #: A message was handed to the waiting receiver, which has not resumed yet.
        self._handed = False
        self._closed = False

    def __len__(self) -> int:
        return len(self._items) if self._items is not None else 0

    @property
    def closed(self) -> bool:
        return self._closed

    def queued(self) -> tuple[Any, ...]:
        """The messages waiting to be received, oldest first (a copy)."""
        return tuple(self._items) if self._items is not None else ()

    def statistics(self) -> MailboxStatistics:
        return MailboxStatistics(len(self) + self._handed, len(self._senders or ()), self._closed)

    # -- sending -----------------------------------------------------------------------------

    def send_nowait(self, message: Any) -> None:
        """Queue ``message`` or hand it to the waiting receiver; ``trio.WouldBlock`` if full."""
        if self._closed:
            raise trio.ClosedResourceError("the mailbox is closed")
        receiver = self._receiver
        if receiver is not None:
            self._receiver = None
            self._handed = True
            reschedule(receiver, Value(message))
        elif len(self) < self._capacity:
            if self._items is None:
                self._items = deque()
            self._items.append(message)
        else:
            raise trio.WouldBlock

    async def send(self, message: Any) -> None:
        """Like ``send_nowait``, but wait for space when the mailbox is full."""
        await checkpoint_if_cancelled()
        try:
            self.send_nowait(message)
        except trio.WouldBlock:
            pass
        else:
            await cancel_shielded_checkpoint()
            return
        task = current_task()
        if self._senders is None:
            self._senders = {}
        senders = self._senders
        senders[task] = message

        def abort(_: Any) -> Abort:
            del senders[task]
            return Abort.SUCCEEDED

        await wait_task_rescheduled(abort)

    def close(self) -> None:
        """No more messages: the receiver reads what is queued, then gets ``EndOfChannel``.

        Tasks blocked in ``send`` get ``trio.ClosedResourceError`` (their message is not sent).
        """
        if self._closed:
            return
        self._closed = True
        if self._senders:
            for task in self._senders:
                reschedule(task, Error(trio.ClosedResourceError("the mailbox was closed")))
            self._senders = None
        receiver = self._receiver
        if receiver is not None:
            self._receiver = None
            reschedule(receiver, Error(trio.EndOfChannel()))

    # -- receiving ---------------------------------------------------------------------------

    def receive_nowait(self) -> Any:
        """The next message; ``trio.WouldBlock`` if none, ``trio.EndOfChannel`` once closed."""
        if self._items:
            message = self._items.popleft()
            if not self._items:
                self._items = None
            self._admit_sender()
            return message
        if self._senders:
            # Capacity 0: take a blocked sender's message directly.
            task, message = next(iter(self._senders.items()))
            del self._senders[task]
            reschedule(task, Value(None))
            return message
        if self._closed:
            raise trio.EndOfChannel
        raise trio.WouldBlock

    async def receive(self) -> Any:
        """The next message, waiting for one; ``trio.EndOfChannel`` once closed and empty.

        The schedule point comes before a queued message is taken, not between taking it
        and returning it (as in trio's channels), so it is never in nobody's hands.
        """
        await checkpoint()
        try:
            return self.receive_nowait()
        except trio.WouldBlock:
            pass
        if self._receiver is not None:
            raise trio.BusyResourceError("another task is already receiving from this mailbox")
        self._receiver = current_task()
        try:
            return await wait_task_rescheduled(self._abort_receive)
        finally:
            self._handed = False

    def _abort_receive(self, _: Any) -> Abort:
        self._receiver = None
        return Abort.SUCCEEDED

    def __aiter__(self) -> Mailbox:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    def _admit_sender(self) -> None:
        """A slot was freed: move the longest-waiting blocked sender's message in."""
        if self._senders:
            task, message = next(iter(self._senders.items()))
            del self._senders[task]
            if self._items is None:
                self._items = deque()
            self._items.append(message)
            reschedule(task, Value(None))
