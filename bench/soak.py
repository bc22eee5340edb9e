"""Soak: a time-compressed day of customers (bursts, typing, idle gaps) against short timeouts.

The customer model is ``bench.soak_model`` (daily curve, 1–3 bursts per session with typing
presences, gaps, 2 % redelivered duplicates). wabot runs with short timeouts
(buffer 1 s, typing 2 s, max wait 5 s, idle 3 s) against the fakes at zero latency; the load
process sends every event open-loop at its scheduled time and samples ``/metrics`` every
second: live actors, RSS, pending inbox. The *active set* at time t is the users with an
event (webhook sent or reply received) within ``idle + buffer + max_wait + 2 s`` of t, plus
users still waiting for an answer.

Checks: RSS after warm-up (the first 30 % of the run) stays within ±10 % of its value at the
end of warm-up; live actors never exceed the active set; at the end nothing is pending in the
durable inbox (every message answered, or dropped by a documented rule — duplicates are
recognised by message id; flood drops and fallbacks are counted in the metrics).
"""

from __future__ import annotations

import math
from typing import Any

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

SETTINGS = {
    "buffer_seconds": 1.0,
    "voice_buffer_seconds": 1.5,
    "typing_seconds": 2.0,
    "max_wait_seconds": 5.0,
    "idle_seconds": 3.0,
}


def run(quick: bool) -> dict[str, Any]:
    users, duration = (250, 25.0) if quick else (10_000, 600.0)
    active_window = (
        SETTINGS["idle_seconds"] + SETTINGS["buffer_seconds"] + SETTINGS["max_wait_seconds"] + 2
    )
    base = workdir("soak")
    loadgen = LoadGen(base / "loadgen.log")
    try:
        bot, url = start_bot(bot_env(loadgen.fakes, base / "data", **SETTINGS), base / "bot.log")
        try:
            loadgen.call("reset", 10, hook_url=url + "/hook", echo=True)
            r = loadgen.call(
                "soak",
                duration + 600,
                url=url + "/hook",
                users=users,
                duration=duration,
                active_window=active_window,
                settle_seconds=120,
            )
        finally:
            bot.stop(60)
    finally:
        loadgen.close()
        cleanup(base)
    samples = [s for s in r["samples"] if not math.isnan(s["rss_mb"])]
    warm_end = duration * 0.3
    after = [s for s in samples if s["t"] >= warm_end]
    ref = after[0]["rss_mb"] if after else math.nan
    rss_max = max((s["rss_mb"] for s in after), default=math.nan)
    rss_min = min((s["rss_mb"] for s in after), default=math.nan)
    over = [s for s in samples if s["live"] > s["active"]]
    final = r["final_metrics"]
    turns = {k: v for k, v in final.items() if k.startswith("wabot_turns_total")}
    result = {
        "quick": quick,
        "users": users,
        "duration": duration,
        "settings": SETTINGS,
        "events": r["events"],
        "text_webhooks": r["text_webhooks"],
        "duplicates_sent": r["duplicates_sent"],
        "distinct_messages_acked": r["distinct_messages_acked"],
        "replies": r["replies"],
        "users_with_replies": r["users_with_replies"],
        "turns": turns,
        "flood_dropped": final.get("wabot_flood_dropped_total", 0),
        "duplicates_detected": final.get("wabot_duplicates", final.get("wabot_duplicates_total")),
        "pending_at_end": final.get("wabot_inbox_pending"),
        "live_at_end": final.get("wabot_live_actors"),
        "load": r["load"],
        "rss_ref_mb": ref,
        "rss_after_warmup_min_mb": rss_min,
        "rss_after_warmup_max_mb": rss_max,
        "max_live": max((s["live"] for s in samples), default=math.nan),
        "max_active": max((s["active"] for s in samples), default=math.nan),
        "samples_live_over_active": len(over),
        "samples": r["samples"],
        "targets": {
            "rss_flat_10pct": {
                "met": bool(after) and rss_max <= ref * 1.10 and rss_min >= ref * 0.90,
            },
            "live_le_active": {"violations": len(over), "met": not over},
            "nothing_pending": {
                "pending": final.get("wabot_inbox_pending"),
                "met": final.get("wabot_inbox_pending") == 0,
            },
        },
    }
    write_result("soak", result)
    lat = r["load"]["latency"]
    print_table(
        f"Soak: {users} users over {duration:.0f} s (time-compressed day), short timeouts",
        [
            "webhooks",
            "msgs acked",
            "dups sent",
            "replies",
            "ack p99 ms",
            "errors",
            "RSS ref/min/max MiB",
            "max live",
            "max active",
            "live>active",
            "pending end",
        ],
        [
            [
                r["events"],
                r["distinct_messages_acked"],
                r["duplicates_sent"],
                r["replies"],
                lat["p99_ms"],
                r["load"]["non_2xx"] + r["load"]["socket_errors"] + r["load"]["unfinished"],
                f"{ref}/{rss_min}/{rss_max}",
                result["max_live"],
                result["max_active"],
                len(over),
                result["pending_at_end"],
            ]
        ],
    )
    t = result["targets"]
    print(
        f"RSS flat ±10% after warm-up: {verdict(t['rss_flat_10pct']['met'])}; "
        f"live <= active: {verdict(t['live_le_active']['met'])}; "
        f"nothing pending at end: {verdict(t['nothing_pending']['met'])}"
    )
    return result


if __name__ == "__main__":
    import sys

    run("--quick" in sys.argv)
