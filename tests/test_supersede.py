"""One coherent answer when the customer keeps writing (issue 25, ``WABOT_SUPERSEDE``).

The rule of when a running turn gives way is a pure function (``buffering.may_supersede``),
tested with plain values first; then end to end through the fakes: the reply, and the
conversation on the fake OpenAI, which must hold the customer's messages once and one answer
after them, the answer the customer received.
"""

from __future__ import annotations

import attrs

from actors.customer.buffering import Buffer, Timings, may_supersede
from actors.customer.events import InboundMessage

T = Timings(
    buffer_seconds=5.0,
    voice_buffer_seconds=8.0,
    typing_seconds=10.0,
    max_wait_seconds=30.0,
    max_buffered=50,
    max_buffered_chars=8000,
    supersede=True,
    supersede_max=2,
)
RESETS = frozenset({"reset", "/reset"})


def message(n: int, text: str = "y otra cosa") -> InboundMessage:
    return InboundMessage(
        f"m{n}", "573000000001", "573000000001@s.whatsapp.net", "Ana", "text", text, 0.0
    )


def waiting(*texts: str) -> Buffer:
    buffer = Buffer()
    for n, text in enumerate(texts):
        buffer.add(message(n, text), 100.0 + n, T)
    return buffer


def test_a_message_waiting_supersedes_a_turn_that_sent_nothing() -> None:
    assert may_supersede(waiting("y otra cosa"), T, superseded=0, committed=False)
    assert may_supersede(waiting("a", "b"), T, superseded=1, committed=False)


def test_nothing_waiting_or_a_committed_turn_is_never_superseded() -> None:
    assert not may_supersede(Buffer(), T, superseded=0, committed=False)
    assert not may_supersede(waiting("x"), T, superseded=0, committed=True)


def test_the_bound_holds_and_off_is_off() -> None:
    assert not may_supersede(waiting("x"), T, superseded=2, committed=False)
    one = attrs.evolve(T, supersede_max=1)
    assert may_supersede(waiting("x"), one, superseded=0, committed=False)
    assert not may_supersede(waiting("x"), one, superseded=1, committed=False)
    off = attrs.evolve(T, supersede=False)
    assert not may_supersede(waiting("x"), off, superseded=0, committed=False)


def test_a_resumed_turn_and_a_waiting_reset_are_left_alone() -> None:
    assert not may_supersede(waiting("x"), T, superseded=0, committed=False, resumed=True)
    buffer = waiting("x", " RESET ")
    assert not may_supersede(buffer, T, superseded=0, committed=False, reset_keywords=RESETS)
    assert may_supersede(buffer, T, superseded=0, committed=False)
