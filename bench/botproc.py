"""The benchmark subject: what ``wabot serve`` runs, in a process of its own.

``python -m bench.botproc`` builds ``Settings`` from the environment (no ``.env``), runs
``gateway.server.run_server`` as ``wabot serve`` does (store, supervisor, gateway, hypercorn's
trio worker with ``hypercorn.toml``; SIGTERM/SIGINT drain it), prints ``BENCH-READY <url>
<pid>`` on stdout once it is ready, and after a clean stop exits without teardown as ``wabot
serve`` does. It exists because the benchmarks must control the subject process (signals, RSS
from ``/proc``) and must not depend on CLI details; it adds nothing to the request path.

For ``bench.tuning`` only:

- ``BENCH_TUNING_OFF``: comma-separated knobs of ``gateway.tuning`` to switch off in this
  process (``freeze``, ``trim``, ``stop_collecting``, ``exit_fast``); full-collection pacing
  is switched off with ``WABOT_GC_FULL_INTERVAL_SECONDS=0`` and the allocator with
  ``PYTHONMALLOC``, as in production;
- ``BENCH_GC_FILE``: every full collection's count and pauses (JSON, rewritten each 0.5 s and
  at exit), counted whether or not pacing is on.

For ``bench.ingest --hook`` only: ``BENCH_HOOK=route`` serves ``POST /hook`` as a Quart route
(``bench.hook_route``) instead of the bare ASGI endpoint in front of the app.
"""

from __future__ import annotations

import gc
import json
import os
import time
from pathlib import Path
from typing import Any

import trio

from actors.settings import Settings
from bench import hook_route
from gateway import logs, server, tuning
from gateway.server import Running, run_server

KNOBS = ("freeze", "trim", "stop_collecting", "exit_fast")


class FullCollections:
    """Counts full collections and their pauses (a ``gc.callbacks`` entry)."""

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.max = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._started = time.perf_counter()
            return
        pause = time.perf_counter() - self._started
        self.count += 1
        self.total += pause
        self.max = max(self.max, pause)

    def write(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"count": self.count, "total": self.total, "max": self.max}))
        tmp.replace(path)


def switch_off(knobs: set[str]) -> None:
    unknown = knobs - set(KNOBS)
    if unknown:
        raise SystemExit(f"BENCH_TUNING_OFF: unknown knobs {sorted(unknown)}")
    if "freeze" in knobs:
        tuning.freeze_startup_heap = lambda: None
    if "trim" in knobs:
        tuning.release_free_memory = lambda: False
    if "stop_collecting" in knobs:
        tuning.stop_collecting_for_exit = lambda: None


async def _main(settings: Settings, gc_file: Path | None) -> None:
    collections = FullCollections()
    if gc_file is not None:
        gc.callbacks.append(collections)

    async def report(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while gc_file is not None:
            collections.write(gc_file)
            await trio.sleep(0.5)

    async with trio.open_nursery() as nursery:
        await nursery.start(report)

        async def serve(*, task_status: trio.TaskStatus[Running]) -> None:
            try:
                await run_server(settings, handle_signals=True, task_status=task_status)
            finally:
                nursery.cancel_scope.cancel()  # the reporter

        running: Running = await nursery.start(serve)
        print(f"BENCH-READY {running.url} {os.getpid()}", flush=True)
    if gc_file is not None:
        collections.write(gc_file)


def serve_hook_as_route() -> None:
    """The shell builds ``HookEndpoint(service, app)``: build the route instead."""
    if not hasattr(server, "HookEndpoint"):
        raise SystemExit("BENCH_HOOK=route: gateway.server no longer builds a HookEndpoint")

    def route(service: Any, app: Any) -> Any:
        return hook_route.register_route(app, service)

    server.HookEndpoint = route  # type: ignore[misc,assignment]


def main() -> int:
    hook_kind = os.environ.get("BENCH_HOOK", "endpoint")
    if hook_kind not in {"endpoint", "route"}:
        raise SystemExit(f"BENCH_HOOK: {hook_kind!r} is neither endpoint nor route")
    if hook_kind == "route":
        serve_hook_as_route()
    off = {knob for knob in os.environ.get("BENCH_TUNING_OFF", "").split(",") if knob}
    switch_off(off)
    gc_file = os.environ.get("BENCH_GC_FILE")
    settings = Settings.from_env(dotenv=None)
    logs.configure(production=False, level=os.environ.get("WABOT_LOG_LEVEL", "INFO"))
    trio.run(_main, settings, Path(gc_file) if gc_file else None)
    print("BENCH-STOPPED", flush=True)
    if "exit_fast" in off:
        return 0
    tuning.exit_fast(0)


if __name__ == "__main__":
    raise SystemExit(main())
