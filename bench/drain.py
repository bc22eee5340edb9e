"""Drain: SIGTERM with many live actors, some mid-buffer; time to exit; nothing acked is lost.

wabot runs with ``WABOT_BUFFER_SECONDS=10``. Phase 1: ``live − mid`` users each send one
message and get their reply (their actors stay live: idle timeout 15 min). Phase 2: ``mid``
more users send one message each; once every webhook is acknowledged (200), those actors are
mid-buffer (the 10 s window has not run out) and SIGTERM is sent. Measured: SIGTERM → process
exit. Then the data directory is opened offline: every phase-2 message must be pending in the
durable inbox (acknowledged, not answered, not lost). Then wabot restarts on the same data
directory (buffer 0.2 s) and every phase-2 user must get a reply (replay after restart).

Target: exit ≤ 2 s plus in-flight turns (there are none in flight here), zero acked messages
lost.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import trio

from bench.common import (
    LoadGen,
    bot_env,
    cleanup,
    print_table,
    start_bot,
    verdict,
    workdir,
    write_result,
)
from store import StoreConfig, open_store

BASE_IDLE = 573_700_000_000
BASE_MID = 573_800_000_000


async def _pending_ids(data_dir: Path) -> set[str]:
    async with open_store(StoreConfig(data_dir=data_dir)) as store:
        return {entry.message_id for entry in store.pending_inbox()}


def run(quick: bool) -> dict[str, Any]:
    live, mid = (300, 100) if quick else (10_000, 1_000)
    base = workdir("drain")
    data = base / "data"
    loadgen = LoadGen(base / "loadgen.log")
    ids_file = base / "mid-ids.json"
    try:
        bot, url = start_bot(
            bot_env(loadgen.fakes, data, buffer_seconds=10, max_wait_seconds=60), base / "bot.log"
        )
        try:
            idle = loadgen.call(
                "round",
                3600,
                url=url + "/hook",
                users=live - mid,
                user_base=BASE_IDLE,
                concurrency=32,
                max_seconds=3000,
                timeout=900,
            )
            loadgen.call(
                "closed",
                600,
                url=url + "/hook",
                users=mid,
                user_base=BASE_MID,
                concurrency=32,
                max_seconds=300,
                ids_file=str(ids_file),
            )
            metrics = loadgen.call("metrics", 30, url=url)["metrics"]
            t0 = time.monotonic()
            bot.signal(signal.SIGTERM)
            code = bot.wait(120)
            exit_seconds = time.monotonic() - t0
        finally:
            bot.stop(30)
        acked_ids = set(json.loads(ids_file.read_text()))
        pending = trio.run(_pending_ids, data)
        missing = acked_ids - pending
        bot2, _url2 = start_bot(bot_env(loadgen.fakes, data, buffer_seconds=0.2), base / "bot.log")
        try:
            replayed = loadgen.call(
                "replies", 600, users=mid, user_base=BASE_MID, minimum=1, timeout=300
            )
        finally:
            bot2.stop(60)
    finally:
        loadgen.close()
        cleanup(base)
    result = {
        "quick": quick,
        "live_actors_at_sigterm": metrics.get("wabot_live_actors"),
        "mid_buffer": mid,
        "phase1_replied": idle["replied"],
        "phase1_seconds": idle["seconds_to_all_replies"],
        "acked_mid_buffer": len(acked_ids),
        "exit_code": code,
        "exit_seconds": round(exit_seconds, 3),
        "pending_after_exit": len(pending),
        "acked_not_pending": len(missing),
        "replied_after_restart": replayed["replied"],
        "replay_seconds": replayed["seconds"],
        "targets": {
            "exit_le_2s": {"measured": round(exit_seconds, 3), "met": exit_seconds <= 2.0},
            "zero_lost": {
                "lost": len(missing) + (len(acked_ids) - replayed["replied"]),
                "met": not missing and replayed["replied"] == len(acked_ids),
            },
        },
    }
    write_result("drain", result)
    print_table(
        "Drain: SIGTERM with live actors, some mid-buffer",
        [
            "live",
            "mid-buffer acked",
            "exit s",
            "exit code",
            "pending on disk",
            "lost",
            "answered after restart",
        ],
        [
            [
                result["live_actors_at_sigterm"],
                len(acked_ids),
                result["exit_seconds"],
                code,
                len(pending),
                len(missing),
                f"{replayed['replied']}/{len(acked_ids)}",
            ]
        ],
    )
    t = result["targets"]
    print(
        f"exit <= 2 s: {verdict(t['exit_le_2s']['met'])}; "
        f"zero acked lost: {verdict(t['zero_lost']['met'])}"
    )
    return result


if __name__ == "__main__":
    import sys

    run("--quick" in sys.argv)
