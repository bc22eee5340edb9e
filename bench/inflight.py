"""Memory of turns in flight: what one more customer waiting for the model costs the process.

``python -m bench.inflight [--steps 500,1000,2000]`` starts the load process's fakes with every
``responses.create`` held for ten minutes (a delay fault), a wabot subject with no bound on
concurrent turns and a connection pool as large as the largest step, then brings new
customers (one text each) step by step. At each step it waits until the subject has as many
turns in flight (``wabot_turns_in_flight``) as customers have written, every one parked inside
its model call (the state a slow model leaves the process in), lets memory settle and reads
the subject's RSS. The slope between steps is the memory of one customer with a turn in flight
(its actor, its record, the turn, its HTTP connection and request); the idle actor's own
share is measured by ``bench.actor_mem``. The result sizes the default bound on turns in
flight (``WABOT_MAX_CONCURRENT_TURNS``).
"""

from __future__ import annotations

import argparse
import itertools
import time
from typing import Any

import httpx

from bench.common import (
    LoadGen,
    bot_env,
    cleanup,
    machine,
    mib,
    print_table,
    rss_bytes,
    start_bot,
    workdir,
    write_result,
)
from bench.loadgen import text_webhook, user_id

HOLD_SECONDS = 600.0


def _in_flight(client: httpx.Client, url: str) -> int:
    for line in client.get(f"{url}/metrics").text.splitlines():
        if line.startswith("wabot_turns_in_flight "):
            return int(float(line.split()[1]))
    raise RuntimeError("the subject's /metrics has no wabot_turns_in_flight")


def measure(steps: list[int]) -> dict[str, Any]:
    work = workdir("inflight")
    loadgen = LoadGen(work / "loadgen.log")
    rows: list[dict[str, Any]] = []
    try:
        fakes = loadgen.fakes
        base = fakes["openai_url"].rstrip("/").removesuffix("/v1")
        with httpx.Client(timeout=30) as client:
            rule = {"path": "/responses$", "status": 200, "delay": HOLD_SECONDS, "times": "inf"}
            client.post(f"{base}/__fake__/faults", json=rule).raise_for_status()
            env = bot_env(
                fakes,
                work / "data",
                buffer_seconds=0.05,
                max_concurrent_turns=max(steps) * 2,
                http_pool_size=max(steps) * 2,
                turn_timeout_seconds=HOLD_SECONDS * 2,
                openai_timeout_seconds=HOLD_SECONDS * 2,
                memory_soft_mb=8192,
                memory_hard_mb=16384,
                log_level="WARNING",
            )
            bot, url = start_bot(env, work / "bot.log")
            try:
                pid = bot.popen.pid
                time.sleep(2)
                rows.append({"in_flight": 0, "rss": rss_bytes(pid)})
                written = shed = 0
                for step in steps:
                    while written < step:
                        _mid, body = text_webhook(user_id(written), "hola, ¿tenéis sitio?")
                        answer = client.post(f"{url}/hook", content=body)
                        if answer.status_code == 503:  # shed: deliver it again, as Whapi does
                            shed += 1
                            time.sleep(0.5)
                            continue
                        answer.raise_for_status()
                        written += 1
                    deadline = time.monotonic() + 300
                    while _in_flight(client, url) < step:
                        if time.monotonic() > deadline:
                            raise RuntimeError(f"only {_in_flight(client, url)} of {step}")
                        time.sleep(0.5)
                    time.sleep(5)  # every turn in flight past its conversation, into the call
                    rows.append({"in_flight": step, "rss": rss_bytes(pid), "shed": shed})
                    print(
                        f"{step} turns in flight: RSS {mib(rows[-1]['rss']):.1f} MiB, "
                        f"{shed} webhooks shed on the way",
                        flush=True,
                    )
            finally:
                bot.popen.kill()
                bot.wait(10)
    finally:
        loadgen.close()
        cleanup(work)
    slopes = [
        (b["rss"] - a["rss"]) / (b["in_flight"] - a["in_flight"])
        for a, b in itertools.pairwise(rows)
    ]
    per_turn = (rows[-1]["rss"] - rows[1]["rss"]) / (rows[-1]["in_flight"] - rows[1]["in_flight"])
    print_table(
        "Memory of customers with a turn in flight (model call held by the fake)",
        ["turns in flight", "RSS MiB", "KiB per added turn"],
        [
            [
                r["in_flight"],
                f"{mib(r['rss']):.1f}",
                "" if i == 0 else f"{slopes[i - 1] / 1024:.1f}",
            ]
            for i, r in enumerate(rows)
        ],
    )
    print(f"per turn in flight (first step to last): {per_turn / 1024:.1f} KiB")
    return {"machine": machine(), "rows": rows, "bytes_per_turn_in_flight": per_turn}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="500,1000,2000")
    args = parser.parse_args()
    steps = [int(s) for s in args.steps.split(",")]
    result = measure(steps)
    write_result("inflight", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
