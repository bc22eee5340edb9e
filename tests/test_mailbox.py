"""The actor mailbox: bounded FIFO, hand-over, back-pressure, close and cancellation."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from actors.runtime.mailbox import Mailbox


async def test_fifo_up_to_capacity_then_would_block() -> None:
    box = Mailbox(3)
    for n in range(3):
        box.send_nowait(n)
    with pytest.raises(trio.WouldBlock):
        box.send_nowait(99)
    assert box.statistics().buffered == 3
    assert [await box.receive() for _ in range(3)] == [0, 1, 2]
    assert box.statistics().buffered == 0
    with pytest.raises(trio.WouldBlock):
        box.receive_nowait()


async def test_a_waiting_receiver_gets_the_message_directly() -> None:
    box = Mailbox(0)
    got: list[int] = []

    async def receiver() -> None:
        got.append(await box.receive())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receiver)
        await trio.testing.wait_all_tasks_blocked()
        box.send_nowait(7)  # capacity 0: only possible because the receiver waits
    assert got == [7]
    assert len(box) == 0


async def test_blocked_senders_are_admitted_in_order_as_space_frees() -> None:
    box = Mailbox(1)
    box.send_nowait("a")
    sent: list[str] = []

    async def sender(message: str) -> None:
        await box.send(message)
        sent.append(message)

    async with trio.open_nursery() as nursery:
        for message in ("b", "c"):
            nursery.start_soon(sender, message)
            await trio.testing.wait_all_tasks_blocked()
        assert box.statistics().waiting_senders == 2
        received = [await box.receive() for _ in range(3)]
    assert received == ["a", "b", "c"]
    assert sent == ["b", "c"]
    assert box.statistics().waiting_senders == 0


async def test_capacity_zero_receive_takes_from_a_blocked_sender() -> None:
    box = Mailbox(0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(box.send, "x")
        await trio.testing.wait_all_tasks_blocked()
        assert box.receive_nowait() == "x"


async def test_close_lets_the_receiver_drain_then_ends_it() -> None:
    box = Mailbox(4)
    box.send_nowait(1)
    box.send_nowait(2)
    box.close()
    box.close()  # idempotent
    with pytest.raises(trio.ClosedResourceError):
        box.send_nowait(3)
    assert [message async for message in box] == [1, 2]
    with pytest.raises(trio.EndOfChannel):
        await box.receive()


async def test_close_wakes_a_waiting_receiver_and_fails_blocked_senders() -> None:
    box = Mailbox(0)
    outcomes: list[str] = []

    async def receiver() -> None:
        try:
            await box.receive()
        except trio.EndOfChannel:
            outcomes.append("receiver: end")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receiver)
        await trio.testing.wait_all_tasks_blocked()
        box.close()
    full = Mailbox(0)

    async def sender() -> None:
        try:
            await full.send("lost")
        except trio.ClosedResourceError:
            outcomes.append("sender: closed")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender)
        await trio.testing.wait_all_tasks_blocked()
        full.close()
    assert outcomes == ["receiver: end", "sender: closed"]
    assert full.statistics().waiting_senders == 0


async def test_cancelled_waits_leave_no_trace() -> None:
    box = Mailbox(0)
    with trio.move_on_after(0.01):
        await box.receive()
    # The cancelled receiver is forgotten: a new send does not vanish into it.
    with pytest.raises(trio.WouldBlock):
        box.send_nowait("after")
    with trio.move_on_after(0.01):
        await box.send("never")
    assert box.statistics().waiting_senders == 0
    with pytest.raises(trio.WouldBlock):
        box.receive_nowait()


async def test_one_receiver_at_a_time() -> None:
    box = Mailbox(1)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(box.receive)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(trio.BusyResourceError):
            await box.receive()
        box.send_nowait("done")


async def test_receive_and_send_are_checkpoints() -> None:
    box = Mailbox(1)
    with trio.CancelScope() as scope:
        scope.cancel()
        with pytest.raises(trio.Cancelled):
            await box.send("x")
    assert len(box) == 0
    box.send_nowait("y")
    with trio.CancelScope() as scope:
        scope.cancel()
        with pytest.raises(trio.Cancelled):
            await box.receive()
    assert len(box) == 1, "a cancelled receive must not consume the message"


async def test_a_message_is_never_out_of_sight_while_it_is_being_received() -> None:
    """Sent and not yet returned by ``receive``, a message counts as buffered.

    The supervisor retires an actor whose mailbox looks empty and whose behavior is idle; a
    message the actor had taken but not yet got back from ``receive`` was lost to it then
    (it waited, unanswered, in the durable inbox until the customer wrote again). trio
    shuffles each batch of runnable tasks, so every way is tried many times.
    """
    for handed_over in (False, True) * 25:
        await _receive_while_watched(handed_over=handed_over)


async def _receive_while_watched(*, handed_over: bool) -> None:
    box = Mailbox(4)
    got: list[str] = []
    unseen: list[int] = []

    async def receiver() -> None:
        got.append(await box.receive())

    async def watcher() -> None:
        for step in range(20):
            if not got and box.statistics().buffered == 0:
                unseen.append(step)
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        if handed_over:
            nursery.start_soon(receiver)
            await trio.testing.wait_all_tasks_blocked()
            box.send_nowait("m")  # the receiver waits: handed to it directly
            assert box.statistics().buffered == 1
        else:
            box.send_nowait("m")
            nursery.start_soon(receiver)
        nursery.start_soon(watcher)
    assert got == ["m"] and not unseen, f"handed over: {handed_over}, unseen at {unseen}"
    assert box.statistics().buffered == 0
