"""The actor runtime: registry, supervisor, bounded mailboxes, idle stop, restarts.

Virtual-actor style (Orleans, Dapr): ``tell(key, message)`` activates the actor for ``key`` on
its first message; an actor is stopped once it has been idle for ``idle_seconds`` (nothing
buffered, no turn running, empty mailbox). The registry is the only way to spawn, and lookup,
spawn, and retirement are synchronous (no checkpoint between "is the mailbox empty?" and
"remove from the registry"), so a message can never slip into a dead mailbox and there is
never more than one activation per key: a new activation also waits for its predecessor to
finish unwinding before it runs.

Supervision is Erlang's one-for-one: a crashing actor is restarted with the *same* mailbox
after a backoff; past ``restart_limit`` crashes within ``restart_window_seconds`` the actor
is told to give up (the user actor sends a fallback reply) and the cell is parked for
``park_seconds``. Nothing a crash interrupts is lost: the durable inbox still holds every
message the actor had not answered, and a new activation reloads it.

One reaper task retires idle actors in least-recently-active order (the registry is an
ordered dict moved to the end on each message), instead of a timer per actor. Past
``max_actors`` live actors, the least recently active idle one is passivated on spawn.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any, Protocol

import attrs
import trio

from actors.runtime.mailbox import Mailbox

log = logging.getLogger("actors.runtime.supervisor")


class Draining(Exception):
    """The runtime is shutting down and takes no new messages."""


class Behavior(Protocol):
    """What a supervised actor does; one instance per activation (a restart makes a new one)."""

    async def run(self, mailbox: Mailbox) -> None:
        """Consume the mailbox; return normally when it is closed (idle stop or drain)."""

    def is_idle(self) -> bool:
        """True when the actor holds nothing that would be lost by stopping it now."""

    async def give_up(self, error: BaseException) -> None:
        """Called once when the restart limit is hit (e.g. send the user a fallback)."""


@attrs.frozen
class RuntimeConfig:
    idle_seconds: float = 900.0
    mailbox_size: int = 64
    max_actors: int = 100_000
    restart_limit: int = 3
    restart_window_seconds: float = 5.0
    restart_backoff_seconds: float = 0.1
    restart_backoff_max_seconds: float = 2.0
    park_seconds: float = 60.0

    @property
    def reap_interval(self) -> float:
        return min(max(self.idle_seconds / 4, 0.01), 10.0)


@attrs.define(eq=False)
class Cell:
    """The supervisor's bookkeeping for one live key: mailbox, restarts, current behavior."""

    key: str
    mailbox: Mailbox
    last_active: float
    spawned_at: float
    #: The running behavior; None before it is made and once its activation has finished.
    behavior: Any = None
    crashes: deque[float] = attrs.Factory(deque)
    restarts: int = 0
    parked_until: float | None = None
    retired: bool = False
    #: Set when the task of this activation has fully finished.
    done: trio.Event = attrs.Factory(trio.Event)
    #: Set when a message could not be put in the mailbox in time; the actor then reloads its
    #: pending messages from the durable inbox.
    resync: bool = False

    @property
    def mailbox_depth(self) -> int:
        stats = self.mailbox.statistics()
        return stats.buffered + stats.waiting_senders

    @property
    def phase(self) -> str:
        if self.parked_until is not None:
            return "parked"
        behavior = self.behavior
        describe = getattr(behavior, "phase", None)
        return describe() if callable(describe) else "starting"


@attrs.define
class RuntimeCounters:
    spawns: int = 0
    idle_stops: int = 0
    passivations: int = 0
    restarts: int = 0
    give_ups: int = 0
    over_capacity: int = 0
    #: Journaled messages that found the mailbox full and wait in the inbox for a resync.
    resyncs: int = 0


BehaviorFactory = Callable[[str, Cell], Behavior]


class Supervisor:
    """Owns every user actor: their registry, their tasks, their restarts and their retirement."""

    def __init__(self, factory: BehaviorFactory, config: RuntimeConfig) -> None:
        self._factory = factory
        self.config = config
        self._cells: OrderedDict[str, Cell] = OrderedDict()
        #: Retired cells whose task is still unwinding, so a new activation can wait for it.
        self._retiring: dict[str, Cell] = {}
        self._nursery: trio.Nursery | None = None
        self._draining = False
        self.counters = RuntimeCounters()

    # -- queries -----------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._cells)

    def __contains__(self, key: str) -> bool:
        return key in self._cells

    def cell(self, key: str) -> Cell | None:
        return self._cells.get(key)

    def cells(self) -> list[Cell]:
        return list(self._cells.values())

    @property
    def running(self) -> bool:
        return self._nursery is not None and not self._draining

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(
        self, *, task_status: trio.TaskStatus[Supervisor] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run until ``drain`` finishes; every actor task lives in this nursery."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._reaper)
            task_status.started(self)
            try:
                await trio.sleep_forever()
            finally:
                self._nursery = None

    async def drain(self, deadline: float) -> bool:
        """Stop every actor cooperatively; True if all finished before ``deadline``.

        Mailboxes are closed (no cancellation of thousands of tasks): each actor finishes the
        turn it has in flight, leaves unstarted buffers to the durable inbox, and returns.
        Whatever has not finished by ``deadline`` is cancelled with the nursery.
        """
        self._draining = True
        cells = list(self._cells.values())
        for cell in cells:
            cell.mailbox.close()
        with trio.move_on_at(deadline):
            for cell in cells:
                await cell.done.wait()
            return True
        log.warning(
            "drain deadline reached with %d actors still finishing",
            sum(1 for c in cells if not c.done.is_set()),
        )
        return False

    def stop(self) -> None:
        """Cancel whatever is left (after ``drain``, or to end a standalone supervisor)."""
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    # -- messaging ---------------------------------------------------------------------------

    def activate(self, key: str) -> Cell:
        """The live cell for ``key``, spawning it if needed (synchronous: single activation)."""
        if self._draining or self._nursery is None:
            raise Draining("the actor runtime is not accepting messages")
        cell = self._cells.get(key)
        now = trio.current_time()
        if cell is not None:
            cell.last_active = now
            self._cells.move_to_end(key)
            return cell
        if len(self._cells) >= self.config.max_actors:
            self._passivate_one()
        mailbox = Mailbox(self.config.mailbox_size)
        cell = Cell(key=key, mailbox=mailbox, last_active=now, spawned_at=now)
        retiring = self._retiring.get(key)
        predecessor = retiring.done if retiring is not None else None
        self._cells[key] = cell
        self.counters.spawns += 1
        self._nursery.start_soon(self._supervise, cell, predecessor, name=f"actor:{key}")
        return cell

    def tell_nowait(self, key: str, message: Any) -> bool:
        """Deliver without waiting; False if the mailbox is full (the caller may ``tell``)."""
        cell = self.activate(key)
        try:
            cell.mailbox.send_nowait(message)
        except trio.WouldBlock:
            return False
        return True

    async def tell(self, key: str, message: Any, *, wait: float) -> bool:
        """Deliver, waiting up to ``wait`` seconds for mailbox space (backpressure).

        On timeout the cell is flagged to resynchronise from the durable inbox, so a message
        that is journaled but did not fit is still picked up; returns False in that case.
        """
        if self.tell_nowait(key, message):
            return True
        cell = self.activate(key)
        with trio.move_on_after(wait):
            try:
                await cell.mailbox.send(message)
                return True
            except trio.ClosedResourceError:
                pass
        cell.resync = True
        log.warning("mailbox of %s stayed full for %.1fs; the actor will resync", key, wait)
        return False

    def deliver(self, key: str, message: Any) -> bool:
        """Deliver a message that is already in the durable inbox, never waiting.

        With the mailbox full the cell is flagged to resynchronise from the inbox instead
        (the actor reloads every pending message, in order, skipping ids it holds), so the
        webhook that carried it is acknowledged at once whatever the actor is doing: mid-flood,
        backing off after a crash, or parked. Returns False when it took the resync path.
        """
        if self.tell_nowait(key, message):
            return True
        cell = self.activate(key)
        if not cell.resync:
            log.warning("mailbox of %s is full; the actor will resync from the inbox", key)
        cell.resync = True
        self.counters.resyncs += 1
        return False

    def tell_if_live(self, key: str, message: Any) -> bool:
        """Deliver only to a live actor (presence updates never spawn one)."""
        cell = self._cells.get(key)
        if cell is None or self._draining:
            return False
        try:
            cell.mailbox.send_nowait(message)
        except (trio.WouldBlock, trio.ClosedResourceError):
            return False
        return True

    # -- retirement --------------------------------------------------------------------------

    def _can_retire(self, cell: Cell) -> bool:
        behavior = cell.behavior
        return (
            cell.parked_until is None
            and behavior is not None
            and cell.mailbox_depth == 0
            and not cell.resync
            and behavior.is_idle()
        )

    def _retire(self, cell: Cell) -> None:
        # No checkpoint from the idle check to here: nothing can be told to this cell after it.
        del self._cells[cell.key]
        self._retiring[cell.key] = cell
        cell.retired = True
        cell.mailbox.close()

    def retire_idle(self, limit: int | None = None) -> int:
        """Passivate idle actors, least recently active first (memory pressure); returns count."""
        count = 0
        for cell in list(self._cells.values()):
            if limit is not None and count >= limit:
                break
            if self._can_retire(cell):
                self._retire(cell)
                count += 1
        self.counters.passivations += count
        return count

    def _passivate_one(self) -> None:
        for cell in self._cells.values():
            if self._can_retire(cell):
                self._retire(cell)
                self.counters.passivations += 1
                return
        self.counters.over_capacity += 1
        log.warning("%d live actors and none idle: going over max_actors", len(self._cells))

    async def _reaper(self) -> None:
        while True:
            await trio.sleep(self.config.reap_interval)
            cutoff = trio.current_time() - self.config.idle_seconds
            for cell in list(self._cells.values()):
                if cell.last_active > cutoff:
                    break  # ordered by activity: everything after is more recent
                if self._can_retire(cell):
                    self._retire(cell)
                    self.counters.idle_stops += 1
                else:
                    cell.last_active = trio.current_time()
                    self._cells.move_to_end(cell.key)

    # -- supervision -------------------------------------------------------------------------

    async def _supervise(self, cell: Cell, predecessor: trio.Event | None) -> None:
        try:
            if predecessor is not None:
                await predecessor.wait()
            while True:
                behavior = self._factory(cell.key, cell)
                cell.behavior = behavior
                try:
                    await behavior.run(cell.mailbox)
                    return
                except Exception as exc:
                    if not await self._after_crash(cell, behavior, exc):
                        return
        finally:
            if self._cells.get(cell.key) is cell:
                del self._cells[cell.key]
            if self._retiring.get(cell.key) is cell:
                del self._retiring[cell.key]
            # The behavior holds its cell, and the cell its behavior: break that cycle so the
            # retired actor (its buffers, tasks, scopes) is freed by reference counting now,
            # not left to the next full collection, which then has to find and free every
            # actor retired since the last one (0.2 s pauses in the soak benchmark).
            cell.behavior = None
            cell.done.set()

    async def _after_crash(self, cell: Cell, behavior: Behavior, exc: Exception) -> bool:
        """Log, then back off or park; False if the runtime is draining (no restart)."""
        now = trio.current_time()
        log.error("actor %s crashed; restarting", cell.key, exc_info=exc)
        cell.crashes.append(now)
        while cell.crashes and cell.crashes[0] < now - self.config.restart_window_seconds:
            cell.crashes.popleft()
        cell.restarts += 1
        self.counters.restarts += 1
        if self._draining:
            return False
        if len(cell.crashes) > self.config.restart_limit:
            self.counters.give_ups += 1
            log.error(
                "actor %s crashed %d times in %.0fs: giving up, parked for %.0fs",
                cell.key,
                len(cell.crashes),
                self.config.restart_window_seconds,
                self.config.park_seconds,
            )
            cell.parked_until = now + self.config.park_seconds
            try:
                await behavior.give_up(exc)
            except Exception:
                log.exception("give_up of %s failed", cell.key)
            await trio.sleep(self.config.park_seconds)
            cell.parked_until = None
            cell.crashes.clear()
        else:
            backoff = min(
                self.config.restart_backoff_max_seconds,
                self.config.restart_backoff_seconds * 2 ** (len(cell.crashes) - 1),
            )
            await trio.sleep(backoff)
        return not self._draining
