"""The contract of ``store.backend.StoreBackend``, run against every backend.

A backend takes part through a ``Harness``: it opens the backend on one location (opening it
again after closing is a restart of the process), moves a fake wall clock (the dedupe
window), and can take the storage medium away and give it back (an outage). Today the
only harness is the JSON file backend's; a second backend adds its own to ``HARNESSES``
and every test here runs against it too. Nothing here looks at files.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import attrs
import pytest
import trio

from store import DataDirLocked, InboxEntry, InboxStatus, StoreConfig, StoreUnavailable, UserRecord
from store.backend import Housekeeping, StoreBackend
from store.jsonbackend import JsonFileBackend, open_json_backend
from store.state import encode_json
from tests.store_helpers.faults import Fault, FaultyIO

WINDOW = 100.0
START = 1_700_000_000.0
#: Records and entries carry this time: whole seconds survive any backend's encoding.
AT = datetime.fromtimestamp(START, UTC)


class Backend(StoreBackend, Housekeeping, Protocol):
    """What ``Store`` is built on: the durable state and the operator's commands."""


class Harness(Protocol):
    """What a backend brings to run these tests."""

    def open(self) -> AbstractAsyncContextManager[Backend]:
        """Open the backend on this harness's location (configured with ``WINDOW``)."""
        ...

    def advance(self, seconds: float) -> None:
        """Move the backend's wall clock forward."""
        ...

    def break_medium(self) -> None:
        """From now on every write to the storage fails (the disk or the server is gone)."""
        ...

    def repair_medium(self) -> None:
        """Writes work again."""
        ...


@attrs.define
class JsonHarness:
    """The JSON file backend on a temporary data directory, faults through ``FileIO``."""

    data_dir: Path
    io: FaultyIO = attrs.Factory(FaultyIO)
    now: float = START

    def open(self) -> AbstractAsyncContextManager[JsonFileBackend]:
        config = StoreConfig(
            data_dir=self.data_dir,
            io=self.io,
            clock=lambda: self.now,
            dedupe_window_seconds=WINDOW,
            recovery_retry_seconds=0.02,
        )
        return open_json_backend(config)

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def break_medium(self) -> None:
        self.io.arm(Fault("fsync", errno.EIO, times=-1))

    def repair_medium(self) -> None:
        self.io.disarm()


HARNESSES: dict[str, Callable[[Path], Harness]] = {"json": JsonHarness}


@pytest.fixture(params=sorted(HARNESSES))
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Harness:
    return HARNESSES[request.param](tmp_path / request.param)


def record(user_id: str, name: str = "v0") -> UserRecord:
    new = UserRecord.new(user_id, f"{user_id}@s.whatsapp.net", "user", now=AT)
    return attrs.evolve(new, name=name)


def entry(message_id: str, user_id: str = "u1") -> InboxEntry:
    return InboxEntry(message_id, user_id, AT, {"id": message_id, "text": {"body": "hola"}})


def ids(entries: list[InboxEntry]) -> list[str]:
    return [e.message_id for e in entries]


def name(backend: StoreBackend, user_id: str) -> str | None:
    found = backend.get(user_id)
    return None if found is None else found.name


async def wait_healthy(backend: StoreBackend, timeout: float = 5.0) -> None:
    with trio.fail_after(timeout):
        while not backend.healthy:
            await trio.sleep(0.01)


# ------------------------------------------------------------------------------ records


async def test_it_is_a_store_backend(harness: Harness) -> None:
    async with harness.open() as backend:
        assert isinstance(backend, StoreBackend)
        assert backend.healthy
        assert backend.outage_since is None
        assert backend.stats().healthy


async def test_a_put_is_read_back_at_once_and_after_a_restart(harness: Harness) -> None:
    async with harness.open() as backend:
        assert backend.get("u1") is None
        await backend.put(record("u1", "first"))
        await backend.put(record("u2"))
        await backend.put(record("u1", "second"))  # replaced whole: last writer wins
        assert name(backend, "u1") == "second"
        assert len(backend) == 2
    async with harness.open() as backend:
        assert name(backend, "u1") == "second"
        assert backend.get("u1") == record("u1", "second")
        assert {r.user_id for r in backend.records()} == {"u1", "u2"}


async def test_a_delete_is_durable_and_deleting_nothing_is_fine(harness: Harness) -> None:
    async with harness.open() as backend:
        await backend.put(record("u1"))
        await backend.put(record("u2"))
        await backend.delete("u1", "test")
        await backend.delete("nobody", "test")
        assert backend.get("u1") is None
    async with harness.open() as backend:
        assert backend.get("u1") is None
        assert len(backend) == 1


async def test_records_is_a_copy_that_later_writes_do_not_change(harness: Harness) -> None:
    async with harness.open() as backend:
        for i in range(3):
            await backend.put(record(f"u{i}"))
        listed = backend.records()
        await backend.put(record("u9"))
        await backend.delete("u0", "test")
        assert sorted(r.user_id for r in listed) == ["u0", "u1", "u2"]


# -------------------------------------------------------------------------------- inbox


async def test_inbox_add_answers_each_ids_status_before_the_call(harness: Harness) -> None:
    async with harness.open() as backend:
        assert await backend.inbox_add([entry("m1"), entry("m2", "u2"), entry("m1")]) == [
            InboxStatus.NEW,
            InboxStatus.NEW,
            InboxStatus.PENDING,  # repeated within the call
        ]
        assert await backend.inbox_add([entry("m1"), entry("m3")]) == [
            InboxStatus.PENDING,
            InboxStatus.NEW,
        ]
        await backend.settle(["m2"], "replied")
        assert await backend.inbox_add([entry("m2", "u2")]) == [InboxStatus.DONE]
        assert backend.inbox_status("m1") is InboxStatus.PENDING
        assert backend.inbox_status("m2") is InboxStatus.DONE
        assert backend.inbox_status("m9") is InboxStatus.NEW


async def test_pending_messages_per_user_in_arrival_order(harness: Harness) -> None:
    async with harness.open() as backend:
        await backend.inbox_add([entry("a1", "a"), entry("b1", "b")])
        await backend.inbox_add([entry("a2", "a")])
        await backend.inbox_add([entry("a3", "a"), entry("b2", "b")])
        await backend.settle(["a2"], "replied")
        assert ids(backend.pending_for("a")) == ["a1", "a3"]
        assert ids(backend.pending_for("b")) == ["b1", "b2"]
        assert backend.pending_for("nobody") == []
        assert sorted(backend.pending_users()) == ["a", "b"]
        assert ids(backend.pending_inbox()) == ["a1", "b1", "a3", "b2"]
        await backend.settle(["b1", "b2"], "dropped:paused")
        assert backend.pending_users() == ["a"]
    async with harness.open() as backend:
        assert ids(backend.pending_for("a")) == ["a1", "a3"]
        assert backend.pending_users() == ["a"]
        assert backend.pending_for("a")[0].payload == entry("a1", "a").payload
        assert backend.inbox_status("a2") is InboxStatus.DONE
        assert backend.inbox_status("b1") is InboxStatus.DONE


async def test_pre_encoded_payloads_are_the_same_entries(harness: Harness) -> None:
    entries = [entry("m1"), entry("m2")]
    async with harness.open() as backend:
        payloads = [encode_json(e.payload, strict=True) for e in entries]
        assert await backend.inbox_add(entries, payloads=payloads) == [InboxStatus.NEW] * 2
        assert backend.pending_for("u1") == entries
    async with harness.open() as backend:
        assert backend.pending_for("u1") == entries


async def test_concurrent_adds_of_one_id_make_exactly_one_new(harness: Harness) -> None:
    statuses: list[InboxStatus] = []

    async def add() -> None:
        statuses.extend(await backend.inbox_add([entry("m1")]))

    async with harness.open() as backend:
        async with trio.open_nursery() as nursery:
            for _ in range(20):
                nursery.start_soon(add)
        assert statuses.count(InboxStatus.NEW) == 1
        assert statuses.count(InboxStatus.PENDING) == 19
        assert ids(backend.pending_inbox()) == ["m1"]


async def test_settle_puts_the_record_and_the_marks_together(harness: Harness) -> None:
    async with harness.open() as backend:
        await backend.put(record("u1", "before"))
        await backend.inbox_add([entry("m1"), entry("m2")])
        await backend.settle(["m1"], "replied", record=record("u1", "after"))
        assert name(backend, "u1") == "after"
        assert ids(backend.pending_for("u1")) == ["m2"]
        await backend.settle([], "replied", record=record("u1", "alone"))  # a record alone
        await backend.settle([], "replied")  # nothing to do
    async with harness.open() as backend:
        assert name(backend, "u1") == "alone"
        assert backend.inbox_status("m1") is InboxStatus.DONE
        assert ids(backend.pending_for("u1")) == ["m2"]


async def test_done_ids_are_remembered_for_the_window_pending_ones_forever(
    harness: Harness,
) -> None:
    async with harness.open() as backend:
        await backend.inbox_add([entry("done"), entry("waiting")])
        await backend.settle(["done"], "replied")
        harness.advance(WINDOW / 2)
        assert backend.inbox_status("done") is InboxStatus.DONE
        harness.advance(WINDOW)
        assert backend.inbox_status("done") is InboxStatus.NEW
        assert backend.inbox_status("waiting") is InboxStatus.PENDING
    async with harness.open() as backend:
        assert backend.inbox_status("waiting") is InboxStatus.PENDING
        assert await backend.inbox_add([entry("done")]) == [InboxStatus.NEW]


# ------------------------------------------------------------------------------ failures


async def test_a_failed_write_is_unavailable_undone_and_recovered_from(harness: Harness) -> None:
    async with harness.open() as backend:
        await backend.put(record("u1", "kept"))
        await backend.inbox_add([entry("m1")])
        harness.break_medium()
        with pytest.raises(StoreUnavailable):
            await backend.put(record("u1", "lost"))
        assert name(backend, "u1") == "kept"  # the local view no longer shows it
        assert not backend.healthy
        assert backend.outage_since is not None
        assert backend.last_error
        assert not backend.stats().healthy
        with pytest.raises(StoreUnavailable):  # refused while down
            await backend.inbox_add([entry("m2")])
        assert backend.inbox_status("m2") is InboxStatus.NEW
        with pytest.raises(StoreUnavailable):
            await backend.settle(["m1"], "replied", record=record("u1", "lost"))
        assert backend.inbox_status("m1") is InboxStatus.PENDING
        assert name(backend, "u1") == "kept"
        harness.repair_medium()
        await wait_healthy(backend)  # by itself
        assert backend.outage_since is None
        await backend.put(record("u2", "after"))
    async with harness.open() as backend:
        assert name(backend, "u1") == "kept"
        assert name(backend, "u2") == "after"
        assert backend.inbox_status("m1") is InboxStatus.PENDING
        assert backend.inbox_status("m2") is InboxStatus.NEW


async def test_a_failure_fails_every_writer_waiting_with_it(harness: Harness) -> None:
    async with harness.open() as backend:
        for i in range(10):
            await backend.put(record(f"u{i}", "v0"))
        harness.break_medium()
        succeeded: list[str] = []

        async def write(user_id: str) -> None:
            try:
                await backend.put(record(user_id, "v1"))
            except StoreUnavailable:
                return
            succeeded.append(user_id)

        async with trio.open_nursery() as nursery:
            for i in range(10):
                nursery.start_soon(write, f"u{i}")
        assert len(succeeded) < 10
        written = [f"u{i}" for i in range(10) if name(backend, f"u{i}") == "v1"]
        assert written == sorted(succeeded, key=lambda u: int(u[1:]))  # the others undone
        harness.repair_medium()
        await wait_healthy(backend)
        view = {f"u{i}": name(backend, f"u{i}") for i in range(10)}
    async with harness.open() as backend:
        assert {f"u{i}": name(backend, f"u{i}") for i in range(10)} == view


async def test_a_cancelled_write_is_maybe_committed_never_half(harness: Harness) -> None:
    async with harness.open() as backend:
        with trio.move_on_after(0):
            await backend.put(record("maybe"))
        await backend.put(record("sure"))
        shown = backend.get("maybe")
    async with harness.open() as backend:
        assert backend.get("sure") is not None
        assert backend.get("maybe") == shown  # in the local view exactly when durable


async def test_writes_after_close_are_refused(harness: Harness) -> None:
    async with harness.open() as backend:
        pass
    with pytest.raises(StoreUnavailable):
        await backend.put(record("late"))
    with pytest.raises(StoreUnavailable):
        await backend.inbox_add([entry("late")])


# -------------------------------------------------------------------------------- leases


async def test_a_lease_is_held_while_open_and_by_one_process_only(harness: Harness) -> None:
    async with harness.open() as backend:
        lease = backend.lease("u1")
        assert lease is not None
        assert lease.remaining(trio.current_time()) > 0
        try:
            async with harness.open() as second:
                # A backend shared by processes may open twice; a customer's lease is then
                # held by one of them at most.
                for user_id in ("u1", "u2", "u3"):
                    leases = [b.lease(user_id) for b in (backend, second)]
                    held = [x for x in leases if x and x.remaining(trio.current_time()) > 0]
                    assert len(held) <= 1
        except DataDirLocked:
            pass  # a backend owned by one process refuses the second
    assert backend.lease("u1") is None


# -------------------------------------------------------------------------- housekeeping


async def test_housekeeping_keeps_every_record_and_message(harness: Harness) -> None:
    async with harness.open() as backend:
        await backend.put(record("u1"))
        await backend.inbox_add([entry("m1"), entry("m2")])
        await backend.settle(["m1"], "replied")
        await backend.compact()
        await backend.maintain()
        assert (await backend.backup()).exists()
        stats = backend.stats()
        assert (stats.records, stats.pending, stats.done_ids) == (1, 1, 1)
    async with harness.open() as backend:
        assert backend.get("u1") == record("u1")
        assert ids(backend.pending_inbox()) == ["m2"]
        assert backend.inbox_status("m1") is InboxStatus.DONE
