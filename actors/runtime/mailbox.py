"""An actor's mailbox: a bounded FIFO with one consumer, on ``trio.open_memory_channel``.

The channel does the queueing, the waiting and the closing (``send_nowait`` raising
``WouldBlock`` when full, ``send`` waiting for space, ``close`` ending the consumer's loop once
the queued messages are read, ``receive`` raising ``EndOfChannel``). The mailbox adds the two
things the actor runtime needs and a channel does not say:

* a message is never out of sight: from ``send`` until ``receive`` returns it, it counts in
  ``statistics().buffered``. The supervisor retires only actors whose mailbox is empty; a
  channel's receive takes the message off its buffer before its last schedule point, and an
  actor retired in that moment would drop the message it holds.
* one receiver at a time (``BusyResourceError`` for a second), as an actor has one loop.
"""

from __future__ import annotations

from typing import Any

import attrs
import trio


@attrs.frozen
class MailboxStatistics:
    #: Sent and not yet returned by ``receive``: queued, or taken by the waking receiver.
    buffered: int
    waiting_senders: int
    closed: bool


class Mailbox:
    """A bounded mailbox; ``capacity`` messages may wait in it (0: only direct hand-over)."""

    __slots__ = ("_pending", "_receive", "_receiving", "_send")

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError("capacity must be >= 0")
        self._send, self._receive = trio.open_memory_channel[Any](capacity)
        #: Messages given to ``send``/``send_nowait`` and not yet returned by ``receive``
        #: (those of blocked senders included).
        self._pending = 0
        self._receiving = False

    def __len__(self) -> int:
        """Messages queued in the channel's buffer."""
        return self._send.statistics().current_buffer_used

    @property
    def closed(self) -> bool:
        return self._send.statistics().open_send_channels == 0

    def statistics(self) -> MailboxStatistics:
        waiting = self._send.statistics().tasks_waiting_send
        return MailboxStatistics(self._pending - waiting, waiting, self.closed)

    # -- sending -----------------------------------------------------------------------------

    def send_nowait(self, message: Any) -> None:
        """Queue ``message`` or hand it to the waiting receiver; ``trio.WouldBlock`` if full,
        ``trio.ClosedResourceError`` once closed."""
        self._send.send_nowait(message)
        self._pending += 1

    async def send(self, message: Any) -> None:
        """Like ``send_nowait``, but wait for space when the mailbox is full."""
        self._pending += 1
        try:
            await self._send.send(message)
        except BaseException:
            self._pending -= 1
            raise

    def close(self) -> None:
        """No more messages: the receiver reads what is queued, then gets ``EndOfChannel``.

        Tasks blocked in ``send`` get ``trio.ClosedResourceError`` (their message is not sent).
        """
        self._send.close()

    # -- receiving ---------------------------------------------------------------------------

    def receive_nowait(self) -> Any:
        """The next message; ``trio.WouldBlock`` if none, ``trio.EndOfChannel`` once closed."""
        message = self._receive.receive_nowait()
        self._pending -= 1
        return message

    async def receive(self) -> Any:
        """The next message, waiting for one; ``trio.EndOfChannel`` once closed and empty."""
        if self._receiving:
            raise trio.BusyResourceError("another task is already receiving from this mailbox")
        self._receiving = True
        try:
            message = await self._receive.receive()
        finally:
            self._receiving = False
        self._pending -= 1  # only now: until here the message counted as buffered
        return message

    def __aiter__(self) -> Mailbox:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None
