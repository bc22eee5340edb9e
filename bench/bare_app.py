"""The baseline for the ingest benchmark: a bare quart-trio ``POST /hook`` on the same hypercorn.

It reads the body, parses the same JSON and answers 200 with the same small JSON body wabot
sends; no secret check, no store, no actors. It is served by hypercorn's trio worker with
wabot's own hypercorn configuration (``gateway.server.hypercorn_config``), so the ratio
wabot / bare isolates what wabot adds on top of the HTTP stack.

``python -m bench.bare_app`` binds ``HOST``/``PORT`` (default 127.0.0.1:0) and prints
``BENCH-READY <url> <pid>``.
"""

from __future__ import annotations

import json
import os
import signal
import sys

import trio
from hypercorn.trio import serve
from quart import Response, request
from quart_trio import QuartTrio

from actors.settings import Settings
from gateway.server import hypercorn_config


def create_bare_app() -> QuartTrio:
    app = QuartTrio("bare")
    app.config.update(MAX_CONTENT_LENGTH=4 * 1024 * 1024, PROVIDE_AUTOMATIC_OPTIONS=False)

    @app.post("/hook")
    async def hook() -> Response:
        raw = await request.get_data(cache=False)
        try:
            json.loads(raw)
        except ValueError:
            return Response('{"error":"malformed JSON"}', 400, mimetype="application/json")
        return Response('{"received":true}', 200, mimetype="application/json")

    return app


async def _main() -> None:
    settings = Settings(
        host=os.environ.get("HOST", "127.0.0.1"), port=int(os.environ.get("PORT", "0"))
    )
    stop = trio.Event()
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            config = hypercorn_config(settings)
            config.workers = 1  # ``serve`` runs no workers; 1 keeps it from warning
            binds = await nursery.start(
                lambda task_status: serve(
                    create_bare_app(),
                    config,
                    shutdown_trigger=stop.wait,
                    task_status=task_status,
                )
            )
            url = binds[0].replace("://0.0.0.0:", "://127.0.0.1:")
            print(f"BENCH-READY {url} {os.getpid()}", flush=True)
            async for _signum in signals:
                stop.set()
                break


def main() -> int:
    trio.run(_main)
    return 0


if __name__ == "__main__":
    sys.exit(main())
