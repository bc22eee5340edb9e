"""The service: owns the store, the upstream clients, the supervisor and the gateway.

``Service.run`` is the one place where wabot's long-lived parts are opened and closed, in
order, under one nursery that wabot owns (not quart's background nursery, which is cancelled
as soon as ``after_serving`` returns). Shutdown is a drain: ``begin_drain`` flips readiness
and makes webhooks answer 503 at once; ``drain`` lets in-flight turns finish within the
drain budget while unstarted buffers stay in the durable inbox; then the supervisor stops,
the clients close, and the store flushes and writes its final snapshot on the way out.

Until ``run`` reports started, ``gateway`` is None: webhooks answer 503 and readiness is false,
so the listener may already be up (liveness answers) while the store loads.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from datetime import date
from functools import partial
from pathlib import Path
from typing import Any

import trio

from actors.customer.actor import UserActor, UserDeps
from actors.runtime.supervisor import Behavior, Cell, RuntimeConfig, Supervisor
from actors.runtime.telemetry import Telemetry
from actors.settings import Settings
from actors.voice.audio import check_audio_models_at_start
from actors.wiring import open_user_deps
from gateway import limits, logs, tuning
from gateway.gateway import Gateway
from gateway.overload import Overload
from gateway.parse import parse_message
from gateway.watchdog import MemoryWatchdog
from store import Store, StoreConfig, open_store
from store.fileio import FileIO

log = logging.getLogger("gateway.service")

BehaviorWrapper = Callable[[str, Cell, Behavior], Behavior]


class StartupError(Exception):
    """A start-up problem the operator fixes outside wabot (a busy port, an unusable data
    directory): one line naming the problem and the fix, exit 2 like any configuration error."""


def check_data_dir(path: Path) -> None:
    """Create the data directory if needed; ``StartupError`` if it cannot be used."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StartupError(
            f"the data directory {path} cannot be created ({exc.strerror}); set WABOT_DATA_DIR "
            "to a writable directory"
        ) from exc
    # access() also reports a read-only file system, which a root process would otherwise
    # only find at its first write (the journal, after a webhook was received).
    if not os.access(path, os.W_OK | os.X_OK):
        raise StartupError(
            f"the data directory {path} is not writable; fix its permissions or set "
            "WABOT_DATA_DIR to a writable directory"
        )


def store_config(settings: Settings, io: FileIO | None = None) -> StoreConfig:
    return StoreConfig(
        data_dir=settings.data_dir,
        journal_max_bytes=int(settings.journal_max_mb * 2**20),
        dedupe_window_seconds=settings.dedupe_days * 86400,
        backups_hourly=settings.backups_hourly,
        backups_daily=settings.backups_daily,
        retention_days=settings.retention_days,
        recovery_retry_seconds=settings.store_recovery_seconds,
        io=io or FileIO(),
    )


def runtime_config(settings: Settings) -> RuntimeConfig:
    return RuntimeConfig(
        idle_seconds=settings.idle_seconds,
        mailbox_size=settings.mailbox_size,
        max_actors=settings.max_actors,
        restart_limit=settings.restart_limit,
        restart_window_seconds=settings.restart_window_seconds,
        restart_backoff_seconds=settings.restart_backoff_seconds,
        restart_backoff_max_seconds=settings.restart_backoff_max_seconds,
        park_seconds=settings.park_seconds,
    )


class Service:
    """wabot's runtime, independent of how it is served (``wabot serve`` or hypercorn)."""

    def __init__(
        self,
        settings: Settings,
        *,
        wrap_behavior: BehaviorWrapper | None = None,
        file_io: FileIO | None = None,
        today: date | None = None,
    ) -> None:
        self.settings = settings
        logs.guard_access_log()  # before hypercorn logs its first request
        #: The date the start-up checks of model shutdowns use (tests inject one; None: today).
        self.today = today
        self.wrap_behavior = wrap_behavior
        #: The store's file operations; tests pass one that injects faults.
        self.file_io = file_io
        self.store: Store | None = None
        self.deps: UserDeps | None = None
        self.supervisor: Supervisor | None = None
        self.gateway: Gateway | None = None
        self.started_at = 0.0
        self.telemetry = Telemetry()
        #: Requests the app refused before they reached the gateway, by reason.
        self.http_rejections: dict[str, int] = {}
        self.trimmer = tuning.MemoryTrimmer()
        self.watchdog = MemoryWatchdog(
            self,
            soft_bytes=int(settings.memory_soft_mb * 2**20),
            hard_bytes=int(settings.memory_hard_mb * 2**20),
            interval=settings.memory_check_seconds,
            trimmer=self.trimmer,
        )
        self.gc_pacer = tuning.FullCollectionPacer(settings.gc_full_interval_seconds)
        self.overload = Overload(
            max_pending=settings.max_pending_webhooks,
            max_lag=settings.shed_loop_lag_seconds,
            memory_level=lambda: self.watchdog.level,
            registry=self.telemetry.registry,
        )
        self._draining = False
        self._drain_deadline: float | None = None
        self._drain_started = False
        self._stop = trio.Event()
        self._drained = trio.Event()
        #: Set when ``run`` has closed everything (the store's final snapshot is on disk).
        self.finished = trio.Event()

    @property
    def ready(self) -> bool:
        return (
            not self._draining
            and self.gateway is not None
            and self.store is not None
            and self.store.healthy
            and self.supervisor is not None
            and self.supervisor.running
        )

    @property
    def draining(self) -> bool:
        return self._draining

    async def run(
        self, *, task_status: trio.TaskStatus[Service] = trio.TASK_STATUS_IGNORED
    ) -> None:
        try:
            await self._open_and_run(task_status)
        finally:
            self.finished.set()

    async def _open_and_run(self, task_status: Any) -> None:
        settings = self.settings
        check_data_dir(settings.data_dir)
        # Whapi's pool and OpenAI's: each turn in flight may hold one connection of each.
        limits.raise_open_files(2 * settings.pool_size)
        problems = check_audio_models_at_start(settings, today=self.today)
        if problems:
            raise StartupError("; ".join(problems))
        async with contextlib.AsyncExitStack() as stack:
            try:
                store = await stack.enter_async_context(
                    open_store(store_config(settings, self.file_io))
                )
            except OSError as exc:
                # Only opening is covered here (lock, journal): later I/O errors are the
                # store's own to handle (it turns unhealthy and recovers).
                raise StartupError(
                    f"the data directory {settings.data_dir} cannot be used: {exc}; fix its "
                    "permissions or set WABOT_DATA_DIR to a writable directory"
                ) from exc
            await self._run_with_store(store, task_status)

    async def _run_with_store(self, store: Store, task_status: Any) -> None:
        settings = self.settings
        async with (
            open_user_deps(
                settings,
                store,
                self.telemetry,
                partial(parse_message, allow_groups=not settings.ignore_groups),
            ) as deps,
        ):
            self.deps = deps
            await self._run_with(store, deps, task_status)

    async def _run_with(self, store: Store, deps: UserDeps, task_status: Any) -> None:
        def factory(key: str, cell: Cell) -> Behavior:
            actor: Behavior = UserActor(key, cell, deps)
            return self.wrap_behavior(key, cell, actor) if self.wrap_behavior else actor

        supervisor = Supervisor(factory, runtime_config(self.settings))
        async with trio.open_nursery() as nursery:
            await nursery.start(supervisor.run)
            nursery.start_soon(self.watchdog.run)
            await nursery.start(self.overload.lag.run)
            nursery.start_soon(self.trimmer.run)
            nursery.start_soon(self.gc_pacer.run)
            self.store, self.supervisor = store, supervisor
            self.gateway = Gateway(self.settings, store, supervisor, self.telemetry)
            self.gateway.recover()
            self.started_at = trio.current_time()
            tuning.freeze_startup_heap()
            task_status.started(self)
            await self._stop.wait()
            await self.drain()
            nursery.cancel_scope.cancel()  # the supervisor's leftovers and the tuning tasks
        log.info("actors stopped; flushing the store")

    def reject(self, reason: str) -> None:
        self.http_rejections[reason] = self.http_rejections.get(reason, 0) + 1

    def begin_drain(self) -> None:
        """Readiness 503 and webhooks 503 from now on; the drain budget starts now."""
        if not self._draining:
            self._draining = True
            self._drain_deadline = trio.current_time() + self.settings.drain_seconds
            log.info(
                "draining: new webhooks get 503, in-flight turns have %.0fs",
                self.settings.drain_seconds,
            )

    async def drain(self) -> None:
        """Let in-flight turns finish (within the budget) and stop every actor cooperatively.

        Safe to call from several places at once (a signal handler and a lifespan shutdown):
        the first call drains, the others wait for it.
        """
        self.begin_drain()
        if self._drain_started:
            await self._drained.wait()
            return
        self._drain_started = True
        try:
            if self.supervisor is not None:
                assert self._drain_deadline is not None
                await self.supervisor.drain(self._drain_deadline)
        finally:
            self._drained.set()

    def stop(self) -> None:
        """Drain, then close everything (``run`` returns)."""
        self.begin_drain()
        self._stop.set()
