"""In-process probe of the process-wide tuning at N live actors (run by ``bench.tuning``).

``python -m bench.tuning_probe --actors N [--off KNOB,...]`` runs the real ``Service`` (store
in a temporary directory, real ``UserActor``s through its supervisor, as ``bench.actor_mem``
does) under the allocator of its environment (``PYTHONMALLOC``), with the knobs of
``gateway/tuning.py`` named in ``--off`` switched off (``pacing``, ``freeze``, ``trim``,
``stop_collecting``), and prints one JSON line:

* ``bursts``: three times, N new actors are activated as fast as the runtime takes them and
  left idle (a morning's new customers, without their upstream calls), then all retire and the
  trimmer runs once (as its periodic task would). Per burst: the automatic full collections
  during it (count, and their main-thread CPU: summed and longest, so other processes on the
  machine do not count), the burst's CPU, RSS with N live actors and after the retirement;
* ``stop``: N actors live and the pacing interval past, then what SIGTERM does (no
  collection from then on, unless ``stop_collecting`` is off) and the service's drain and close
  (store snapshot): seconds, and the full collections in it and their main-thread CPU.

After the line it prints ``PROBE-EXITING`` and exits as ``wabot serve`` does after a clean
stop: the caller times that exit (the interpreter's teardown of what the service left).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from actors.runtime.supervisor import Supervisor
from actors.settings import Settings
from bench.common import rss_bytes
from gateway import tuning
from gateway.service import Service

KNOBS = ("pacing", "freeze", "trim", "stop_collecting")


class FullCollections:
    """Counts full collections and their main-thread CPU (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.count = 0
        self.cpu = 0.0
        self.max = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._started = time.thread_time()
            return
        pause = time.thread_time() - self._started
        self.count += 1
        self.cpu += pause
        self.max = max(self.max, pause)

    def snapshot(self) -> tuple[int, float]:
        return self.count, self.cpu


async def _activate(supervisor: Supervisor, keys: list[str]) -> None:
    for n, key in enumerate(keys):
        supervisor.activate(key)
        if n % 1000 == 999:
            await trio.sleep(0)
    with trio.fail_after(600):
        while True:
            cells = supervisor.cells()
            if len(cells) >= len(keys) and all(c.behavior is not None for c in cells):
                return
            await trio.sleep(0.05)


async def _retire_all(supervisor: Supervisor) -> None:
    cells = supervisor.cells()
    supervisor.retire_idle()
    with trio.fail_after(600):
        for cell in cells:
            await cell.done.wait()


async def _probe(actors: int, off: set[str], collections: FullCollections) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="wabot-tuning-probe-"))
    settings = Settings(
        whapi_token="unused",
        openai_api_key="unused",
        whapi_api_url="http://127.0.0.1:9",
        openai_base_url="http://127.0.0.1:9/v1",
        data_dir=tmp / "data",
        tmp_dir=tmp / "audio",
        idle_seconds=3600,
        max_actors=actors + 10_000,
        memory_soft_mb=100_000,
        memory_hard_mb=100_000,
        gc_full_interval_seconds=0 if "pacing" in off else 30,
    )
    service = Service(settings)
    pid = os.getpid()
    out: dict[str, Any] = {"actors": actors, "off": sorted(off), "bursts": []}
    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)
        supervisor = service.supervisor
        assert supervisor is not None
        await _activate(supervisor, [f"warm{i}" for i in range(actors)])  # warm-up
        await _retire_all(supervisor)
        await service.trimmer.trim()
        out["baseline_rss"] = rss_bytes(pid)
        collections.max = 0.0  # from here on: the bursts' longest
        for burst in range(3):
            count0, cpu0 = collections.snapshot()
            started, process0 = time.monotonic(), time.process_time()
            await _activate(supervisor, [f"57{burst}{i:010d}" for i in range(actors)])
            seconds, cpu = time.monotonic() - started, time.process_time() - process0
            count1, cpu1 = collections.snapshot()
            live = rss_bytes(pid)
            await _retire_all(supervisor)
            await trio.sleep(0.2)
            await service.trimmer.trim()
            out["bursts"].append(
                {
                    "seconds": round(seconds, 3),
                    "cpu_seconds": round(cpu, 3),
                    "full_gcs": count1 - count0,
                    "full_gc_cpu": round(cpu1 - cpu0, 3),
                    "live_rss": live,
                    "after_retire_rss": rss_bytes(pid),
                }
            )
        out["full_gc_cpu_max"] = round(collections.max, 3)
        await _activate(supervisor, [f"573{i:09d}" for i in range(actors)])
        # Past the pacing interval: full collections are due again, as at a deploy's SIGTERM.
        await trio.sleep(settings.gc_full_interval_seconds + 1)
        count0, cpu0 = collections.snapshot()
        started = time.monotonic()
        tuning.stop_collecting_for_exit()  # what the shell does on SIGTERM
        await service.drain()
        service.stop()
        await service.finished.wait()
        count1, cpu1 = collections.snapshot()
        out["stop"] = {
            "seconds": round(time.monotonic() - started, 3),
            "full_gcs": count1 - count0,
            "full_gc_cpu": round(cpu1 - cpu0, 3),
        }
    shutil.rmtree(tmp, ignore_errors=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--actors", type=int, required=True)
    parser.add_argument("--off", default="", help=f"comma-separated, of {', '.join(KNOBS)}")
    args = parser.parse_args()
    off = {knob for knob in args.off.split(",") if knob}
    if off - set(KNOBS):
        raise SystemExit(f"--off: unknown knobs {sorted(off - set(KNOBS))}")
    if "freeze" in off:
        tuning.freeze_startup_heap = lambda: None
    if "trim" in off:
        tuning.release_free_memory = lambda: False
    if "stop_collecting" in off:
        tuning.stop_collecting_for_exit = lambda: None
    collections = FullCollections()
    gc.callbacks.append(collections)
    result = trio.run(_probe, args.actors, off, collections)
    print(json.dumps(result), flush=True)
    print("PROBE-EXITING", flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
