"""Soak: a time-compressed day of customers (bursts, typing, idle gaps) against short timeouts.

The customer model is ``bench.soak_model`` (1–3 bursts per session with typing presences,
gaps, 2 % redelivered duplicates). wabot runs with short timeouts (buffer 1 s, typing 2 s,
max wait 5 s, idle 3 s) against the fakes at zero latency, with the Whapi fake echoing every
reply back as a webhook as Whapi does; the load process sends every event open-loop at its
scheduled time and samples ``/metrics`` every second: live actors, RSS, pending inbox. The
*active set* at time t is the users with an event (webhook sent or reply received) within
``idle + buffer + max wait + 2 s`` of t, plus users still waiting for an answer.

The customers are returning ones: before the day, each of them sends one message and gets
its answer (their first visit, as the churn benchmark does), which creates their records and
conversations, the user data a number holds after its first days; the day then runs over the
same population. What user data still grows during the day, the message ids remembered for
deduplication, is reported beside RSS (``user_data``).

Two runs, each on a fresh bot and data directory:

- ``steady`` (the targets): the day's sessions start at a constant rate. Checks: RSS after
  warm-up (the first 30 % of the run) stays within ±10 % of its value at the end of warm-up;
  live actors never exceed the active set; at the end nothing is pending in the durable inbox
  (every message answered, or dropped by a documented rule: duplicates are recognised by
  message id; flood drops and fallbacks are counted in the metrics).
- ``day`` (full pass only, no target): the same customers along a daily curve whose evening
  and morning peaks are 2.9 times the mean rate. Time-compressed 144 times, the peaks ask
  one process for more CPU than one core has; the run shows what happens then (ack latency,
  backlog, RSS following the backlog) and that nothing is lost.

Every webhook the model sends must be understood: ignored reasons other than the echoes of
wabot's own replies are reported and fail the run's sanity check.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bench.common import (
    LoadGen,
    bot_env,
    cleanup,
    cpu_seconds,
    print_table,
    start_bot,
    user_data,
    verdict,
    wait_idle,
    workdir,
    write_result,
)
from bench.loadgen import USER_BASE

SETTINGS = {
    "buffer_seconds": 1.0,
    "voice_buffer_seconds": 1.5,
    "typing_seconds": 2.0,
    "max_wait_seconds": 5.0,
    "idle_seconds": 3.0,
}

IGNORED_PREFIX = "wabot_ignored_total"
#: wabot's own replies, echoed back by the Whapi fake: ignored by rule, not a model error.
EXPECTED_IGNORED = {'wabot_ignored_total{reason="echo"}'}


def _one_run(
    loadgen: LoadGen, base: Path, *, curve: str, users: int, duration: float
) -> dict[str, Any]:
    active_window = (
        SETTINGS["idle_seconds"] + SETTINGS["buffer_seconds"] + SETTINGS["max_wait_seconds"] + 2
    )
    bot, url = start_bot(
        bot_env(loadgen.fakes, base / f"data-{curve}", **SETTINGS), base / f"bot-{curve}.log"
    )
    try:
        loadgen.call("reset", 10, hook_url=url + "/hook", echo=True)
        visit = loadgen.call(
            "round",
            3600,
            url=url + "/hook",
            users=users,
            user_base=USER_BASE,
            concurrency=32,
            max_seconds=1800,
            timeout=600,
        )
        wait_idle(loadgen, url, 120)
        data_before = user_data(loadgen, url)
        before = loadgen.call("metrics", 30, url=url)["metrics"]
        loadgen.call("reset", 10, hook_url=url + "/hook", echo=True)
        cpu0 = cpu_seconds(bot.pid)
        r = loadgen.call(
            "soak",
            duration + 600,
            url=url + "/hook",
            users=users,
            duration=duration,
            active_window=active_window,
            settle_seconds=120,
            curve=curve,
        )
        cpu = cpu_seconds(bot.pid) - cpu0
        data_after = user_data(loadgen, url)
    finally:
        bot.stop(60)
    samples = [s for s in r["samples"] if not math.isnan(s["rss_mb"])]
    warm_end = duration * 0.3
    after = [s for s in samples if s["t"] >= warm_end]
    ref = after[0]["rss_mb"] if after else math.nan
    rss_max = max((s["rss_mb"] for s in after), default=math.nan)
    rss_min = min((s["rss_mb"] for s in after), default=math.nan)
    over = [s for s in samples if s["live"] > s["active"]]
    final = r["final_metrics"]

    def during(name: str) -> float:
        """A counter's increase over the day (the first visit excluded)."""
        return final.get(name, 0.0) - before.get(name, 0.0)

    ignored = {k: during(k) for k in final if k.startswith(IGNORED_PREFIX)}
    unexpected = {k: v for k, v in ignored.items() if k not in EXPECTED_IGNORED and v}
    webhooks = during('wabot_webhooks_total{outcome="accepted"}')
    return {
        "curve": curve,
        "first_visit": {
            "users": users,
            "replied": visit["replied"],
            "seconds": visit["seconds_to_all_replies"],
        },
        "user_data_before": data_before,
        "user_data_after": data_after,
        "events": r["events"],
        "text_webhooks": r["text_webhooks"],
        "duplicates_sent": r["duplicates_sent"],
        "distinct_messages_acked": r["distinct_messages_acked"],
        "replies": r["replies"],
        "users_with_replies": r["users_with_replies"],
        "webhooks_accepted": webhooks,
        "bot_cpu_seconds": round(cpu, 1),
        "bot_cpu_ms_per_webhook": round(cpu / webhooks * 1e3, 2) if webhooks else math.nan,
        "turns": {k: during(k) for k in final if k.startswith("wabot_turns_total")},
        "ignored": ignored,
        "unexpected_ignored": unexpected,
        "flood_dropped": during("wabot_flood_dropped_total"),
        "duplicates_detected": during("wabot_duplicates_total"),
        "pending_at_end": final.get("wabot_inbox_pending"),
        "live_at_end": final.get("wabot_live_actors"),
        "load": r["load"],
        "rss_ref_mb": ref,
        "rss_after_warmup_min_mb": rss_min,
        "rss_after_warmup_max_mb": rss_max,
        "max_live": max((s["live"] for s in samples), default=math.nan),
        "max_active": max((s["active"] for s in samples), default=math.nan),
        "samples_live_over_active": len(over),
        "checks": {
            "rss_flat_10pct": bool(after) and rss_max <= ref * 1.10 and rss_min >= ref * 0.90,
            "live_le_active": not over,
            "nothing_pending": final.get("wabot_inbox_pending") == 0,
            "model_understood": not unexpected,
        },
        "samples": r["samples"],
    }


def run(quick: bool) -> dict[str, Any]:
    users, duration = (250, 25.0) if quick else (10_000, 600.0)
    curves = ["steady"] if quick else ["steady", "day"]
    base = workdir("soak")
    loadgen = LoadGen(base / "loadgen.log")
    runs: dict[str, dict[str, Any]] = {}
    try:
        for curve in curves:
            runs[curve] = _one_run(loadgen, base, curve=curve, users=users, duration=duration)
    finally:
        loadgen.close()
        cleanup(base)
    checks = runs["steady"]["checks"]
    result = {
        "quick": quick,
        "users": users,
        "duration": duration,
        "settings": SETTINGS,
        "runs": runs,
        "targets": {
            "rss_flat_10pct": {"met": checks["rss_flat_10pct"]},
            "live_le_active": {
                "violations": runs["steady"]["samples_live_over_active"],
                "met": checks["live_le_active"],
            },
            "nothing_pending": {
                "pending": runs["steady"]["pending_at_end"],
                "met": checks["nothing_pending"],
            },
            "model_understood": {
                "unexpected_ignored": runs["steady"]["unexpected_ignored"],
                "met": checks["model_understood"],
            },
        },
    }
    write_result("soak", result)
    rows = []
    for curve, r in runs.items():
        lat = r["load"]["latency"]
        load = r["load"]
        rows.append(
            [
                curve,
                r["events"],
                r["distinct_messages_acked"],
                r["duplicates_sent"],
                r["replies"],
                r["bot_cpu_ms_per_webhook"],
                f"{lat['p50_ms']}/{lat['p99_ms']}",
                load["non_2xx"] + load["socket_errors"] + load["unfinished"],
                f"{r['rss_ref_mb']}/{r['rss_after_warmup_min_mb']}/{r['rss_after_warmup_max_mb']}",
                r["max_live"],
                r["max_active"],
                r["samples_live_over_active"],
                r["pending_at_end"],
            ]
        )
    print_table(
        f"Soak: {users} users over {duration:.0f} s (time-compressed day), short timeouts",
        [
            "curve",
            "webhooks",
            "msgs acked",
            "dups sent",
            "replies",
            "CPU ms/webhook",
            "ack p50/p99 ms",
            "errors",
            "RSS ref/min/max MiB",
            "max live",
            "max active",
            "live>active",
            "pending end",
        ],
        rows,
    )
    for curve, r in runs.items():
        visit, a, b = r["first_visit"], r["user_data_before"], r["user_data_after"]
        print(
            f"{curve}: first visit {visit['replied']}/{visit['users']} answered in "
            f"{visit['seconds']} s; during the day records {a['store_records']} -> "
            f"{b['store_records']}, dedupe window ids {a['dedupe_window_ids']} -> "
            f"{b['dedupe_window_ids']}, done ids {a['store_done_ids']} -> {b['store_done_ids']}"
        )
        if r["unexpected_ignored"]:
            print(f"{curve}: webhooks of the model ignored: {r['unexpected_ignored']}")
    t = result["targets"]
    print(
        f"steady: RSS flat ±10% after warm-up: {verdict(t['rss_flat_10pct']['met'])}; "
        f"live <= active: {verdict(t['live_le_active']['met'])}; "
        f"nothing pending at end: {verdict(t['nothing_pending']['met'])}; "
        f"every webhook of the model understood: {verdict(t['model_understood']['met'])}"
    )
    if "day" in runs:
        c = runs["day"]["checks"]
        print(
            "day (no target, capacity): "
            + ", ".join(f"{name} {'yes' if ok else 'no'}" for name, ok in c.items())
        )
    return result


if __name__ == "__main__":
    import sys

    run("--quick" in sys.argv)
