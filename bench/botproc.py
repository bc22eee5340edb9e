"""The benchmark subject: wabot's own ``run_server`` in a process of its own.

``python -m bench.botproc`` builds ``Settings`` from the environment (no ``.env``), serves the
real app exactly as ``wabot serve`` does (``gateway.server.run_server``: store, supervisor,
gateway, hypercorn's trio worker), prints ``BENCH-READY <url> <pid>`` on stdout once it
listens, and drains on SIGTERM/SIGINT. It exists because the benchmarks must control the
subject process (signals, RSS from ``/proc``) and must not depend on CLI details; it adds
nothing to the request path.
"""

from __future__ import annotations

import os
import signal

import trio

from actors.settings import Settings
from gateway import logs
from gateway.cli import exit_fast
from gateway.gcpace import stop_collecting_for_exit
from gateway.server import Running, run_server


async def _main(settings: Settings) -> None:
    stop = trio.Event()
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            running: Running = await nursery.start(
                lambda task_status: run_server(settings, stop=stop, task_status=task_status)
            )
            print(f"BENCH-READY {running.url} {os.getpid()}", flush=True)
            async for _signum in signals:
                stop_collecting_for_exit()  # as ``wabot serve`` does
                stop.set()
                break


def main() -> int:
    settings = Settings.from_env(dotenv=None)
    logs.configure(production=False, level=os.environ.get("WABOT_LOG_LEVEL", "INFO"))
    trio.run(_main, settings)
    print("BENCH-STOPPED", flush=True)
    return 0


if __name__ == "__main__":
    exit_fast(main())  # as ``wabot serve`` does after a clean stop
