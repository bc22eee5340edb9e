"""In-process actor memory probe (run as its own process by ``bench.memory``).

``python -m bench.actor_mem --kind minimal|user --actors N`` prints one JSON line:

* warm baseline: the runtime is started and N actors are spawned and retired once (so
  allocator pools, code paths, caches and the registry's tables have seen the load), then
  RSS; every RSS reading follows ``gc.collect()`` and the memory watchdog's
  ``release_free_memory()`` (glibc ``malloc_trim``), as the service's trimmer does;
* N idle live actors: each is activated (``Supervisor.activate``) and has started its
  behavior; RSS delta / N = bytes per live actor;
* retire all (``Supervisor.retire_idle``), wait for every task to finish, RSS again;
* three such rounds with fresh keys (growth from round to round = a leak).

``minimal``: the real ``Supervisor`` with a behavior that only drains its mailbox — the
runtime's own overhead (task, mailbox channel pair, cell, registry entry). ``user``: the
real ``UserActor`` through the real ``Service`` (store, clients), activated without a
message — what an idle customer costs before their data. The single-activation check sends
10 000 concurrent first messages to one key (all released by one event) and counts spawns.
"""

from __future__ import annotations

import argparse
import gc
import json
import tempfile
from pathlib import Path
from typing import Any

import trio

from actors.runtime.mailbox import Mailbox
from actors.runtime.supervisor import Cell, RuntimeConfig, Supervisor
from bench.common import rss_bytes
from gateway.tuning import release_free_memory


class Minimal:
    """The smallest behavior: consume the mailbox until it closes."""

    started = 0

    def __init__(self, key: str, cell: Cell) -> None:
        self.key = key

    async def run(self, mailbox: Mailbox) -> None:
        Minimal.started += 1
        async for _message in mailbox:
            pass

    def is_idle(self) -> bool:
        return True

    async def give_up(self, error: BaseException) -> None:
        return None


#: ``--no-trim`` (``bench.tuning``): RSS as it is, without giving the C heap's free pages back.
TRIM = True


def _rss() -> int:
    gc.collect()
    if TRIM:
        release_free_memory()
    return rss_bytes(_pid())


def _pid() -> int:
    import os

    return os.getpid()


async def _settle(supervisor: Supervisor, live: int) -> None:
    with trio.fail_after(300):
        while True:
            await trio.sleep(0.05)
            cells = supervisor.cells()
            if len(cells) == live and all(c.behavior is not None for c in cells):
                await trio.sleep(0.2)
                return


async def _retire_all(supervisor: Supervisor) -> None:
    cells = supervisor.cells()
    supervisor.retire_idle()
    with trio.fail_after(300):
        for cell in cells:
            await cell.done.wait()


async def _measure(supervisor: Supervisor, actors: int) -> dict[str, Any]:
    # warm-up: spawn and retire once, at full size
    for i in range(actors):
        supervisor.activate(f"warm{i}")
        if i % 1000 == 999:
            await trio.sleep(0)
    await _settle(supervisor, actors)
    await _retire_all(supervisor)
    await trio.sleep(0.2)
    baseline = _rss()
    rounds = []
    for round_no in range(3):
        for i in range(actors):
            supervisor.activate(f"5731{round_no}{i:08d}")
            if i % 1000 == 999:
                await trio.sleep(0)
        await _settle(supervisor, actors)
        live = _rss()
        await _retire_all(supervisor)
        await trio.sleep(0.2)
        rounds.append({"live_rss": live, "after_retire_rss": _rss()})
    first = rounds[0]
    return {
        "actors": actors,
        "baseline_rss": baseline,
        "rounds": rounds,
        "bytes_per_actor": round((first["live_rss"] - baseline) / actors),
        "after_vs_baseline": round(rounds[-1]["after_retire_rss"] / baseline, 3),
        "growth_round1_to_3": round(rounds[-1]["live_rss"] / first["live_rss"], 3),
    }


async def _single_activation(supervisor: Supervisor, senders: int) -> dict[str, Any]:
    spawns = supervisor.counters.spawns
    go = trio.Event()
    delivered = 0

    async def sender(n: int) -> None:
        nonlocal delivered
        await go.wait()
        if await supervisor.tell("573999999999", n, wait=30):
            delivered += 1

    async with trio.open_nursery() as nursery:
        for n in range(senders):
            nursery.start_soon(sender, n)
        await trio.sleep(0.1)
        go.set()
    return {
        "senders": senders,
        "delivered": delivered,
        "activations": supervisor.counters.spawns - spawns,
    }


async def _minimal(actors: int) -> dict[str, Any]:
    config = RuntimeConfig(idle_seconds=3600, max_actors=actors + 10_000)
    supervisor = Supervisor(lambda key, cell: Minimal(key, cell), config)
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        out = await _measure(supervisor, actors)
        out["single_activation"] = await _single_activation(supervisor, 10_000)
        await supervisor.drain(trio.current_time() + 30)
        nursery.cancel_scope.cancel()
    return out


async def _user(actors: int) -> dict[str, Any]:
    from actors.settings import Settings
    from gateway.service import Service

    tmp = Path(tempfile.mkdtemp(prefix="wabot-actor-mem-"))
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
    )
    service = Service(settings)
    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)
        assert service.supervisor is not None
        out = await _measure(service.supervisor, actors)
        service.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kind", choices=("minimal", "user"), required=True)
    parser.add_argument("--actors", type=int, required=True)
    parser.add_argument("--no-trim", action="store_true", help="never call malloc_trim")
    args = parser.parse_args()
    global TRIM
    TRIM = not args.no_trim
    runner = _minimal if args.kind == "minimal" else _user
    result = trio.run(runner, args.actors)
    print(json.dumps({"kind": args.kind, **result}), flush=True)


if __name__ == "__main__":
    main()
