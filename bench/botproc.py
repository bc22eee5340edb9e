"""The benchmark subject: what ``wabot serve`` runs, in a process of its own.

``python -m bench.botproc`` builds ``Settings`` from the environment (no ``.env``), runs
``gateway.server.run_server`` as ``wabot serve`` does (store, supervisor, gateway, hypercorn's
trio worker with ``hypercorn.toml``; SIGTERM/SIGINT drain it), prints ``BENCH-READY <url>
<pid>`` on stdout once it is ready, and ``BENCH-STOPPED`` after a clean stop. It exists
because the benchmarks must control the subject process (signals, RSS from ``/proc``) and
must not depend on CLI details; it adds nothing to the request path.

For ``bench.ingest --hook`` only: ``BENCH_HOOK=route`` serves ``POST /hook`` as a Quart route
(``bench.hook_route``) instead of the bare ASGI endpoint in front of the app.
"""

from __future__ import annotations

import os
from typing import Any

import trio

from actors.settings import Settings
from bench import hook_route
from gateway import logs, server
from gateway.server import Running, run_server


async def _main(settings: Settings) -> None:
    async with trio.open_nursery() as nursery:
        running: Running = await nursery.start(
            lambda task_status: run_server(settings, handle_signals=True, task_status=task_status)
        )
        print(f"BENCH-READY {running.url} {os.getpid()}", flush=True)


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
    settings = Settings.from_env(dotenv=None)
    logs.configure(production=False, level=os.environ.get("WABOT_LOG_LEVEL", "INFO"))
    trio.run(_main, settings)
    print("BENCH-STOPPED", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
