"""The buffering rules as plain functions: no trio, no I/O, times as numbers."""

from __future__ import annotations

import math

from actors.customer.buffering import Added, Buffer, Timings, due_at
from actors.customer.events import InboundMessage

T = Timings(
    buffer_seconds=5.0,
    voice_buffer_seconds=8.0,
    typing_seconds=10.0,
    max_wait_seconds=30.0,
    max_buffered=3,
    max_buffered_chars=50,
)


def message(n: int, text: str = "hola", kind: str = "text") -> InboundMessage:
    return InboundMessage(
        f"m{n}", "573000000001", "573000000001@s.whatsapp.net", "Ana", kind, text, 0.0
    )


def test_nothing_buffered_or_a_turn_running_is_never_due() -> None:
    assert due_at(Buffer(), T) == math.inf
    buffer = Buffer()
    buffer.add(message(1), 100.0, T)
    assert due_at(buffer, T, busy=True) == math.inf


def test_the_quiet_window_follows_the_latest_message_and_a_voice_note_waits_longer() -> None:
    buffer = Buffer()
    buffer.add(message(1), 100.0, T)
    assert due_at(buffer, T) == 105.0
    buffer.add(message(2), 103.0, T)
    assert due_at(buffer, T) == 108.0
    buffer.add(message(3, kind="voice"), 104.0, T)
    assert due_at(buffer, T) == -math.inf  # three messages: full, answer now
    voice = Buffer()
    voice.add(message(4, kind="voice"), 100.0, T)
    assert due_at(voice, T) == 108.0


def test_typing_pushes_the_answer_back_but_never_past_the_max_wait() -> None:
    buffer = Buffer()
    buffer.add(message(1), 100.0, T)
    assert due_at(buffer, T, typing_at=99.0) == 105.0  # typing before the message: ignored
    assert due_at(buffer, T, typing_at=104.0) == 114.0
    assert due_at(buffer, T, typing_at=125.0) == 130.0  # first message + max wait


def test_a_pause_settles_at_once_and_a_store_outage_delays_the_retry() -> None:
    buffer = Buffer()
    buffer.add(message(1), 100.0, T)
    assert due_at(buffer, T, paused=True) == -math.inf
    assert due_at(buffer, T, retry_at=120.0) == 120.0
    assert due_at(buffer, T, retry_at=101.0) == 105.0


def test_past_the_message_cap_texts_merge_and_past_the_char_cap_they_drop() -> None:
    buffer = Buffer()
    for n in range(3):
        assert buffer.add(message(n, "abc"), 100.0 + n, T) is Added.APPENDED
    assert buffer.add(message(3, "def"), 104.0, T) is Added.MERGED
    assert [m.text for m in buffer.messages] == ["abc", "abc", "abc\ndef"]
    assert list(buffer.ids) == ["m0", "m1", "m2", "m3"]
    assert buffer.add(message(4, "x" * 100), 105.0, T) is Added.MERGED  # cut to the room
    assert buffer.chars == 50
    assert buffer.add(message(5, "more"), 106.0, T) is Added.DROPPED
    assert "m5" not in buffer.ids


def test_take_all_or_only_some_then_put_back_in_front() -> None:
    buffer = Buffer()
    for n in range(3):
        buffer.add(message(n), 100.0 + n, T)
    batch, ids = buffer.take({"m0", "m2"})
    assert [m.message_id for m in batch] == ["m0", "m2"] and ids == ["m0", "m2"]
    assert [m.message_id for m in buffer.messages] == ["m1"] and buffer.chars == 4
    buffer.put_back(batch, ids, 200.0)
    assert [m.message_id for m in buffer.messages] == ["m0", "m2", "m1"]
    assert buffer.first_at == buffer.last_at == 200.0 and buffer.chars == 12
    everything, all_ids = buffer.take()
    assert len(everything) == 3 and all_ids == ["m0", "m1", "m2"]
    assert not buffer.messages and not buffer.ids and buffer.chars == 0
