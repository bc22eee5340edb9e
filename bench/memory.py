"""Actor memory and churn.

Part 1, in-process (``bench.actor_mem``, a fresh process per kind): bytes per idle live
actor as the RSS delta of N actors over a warm baseline, for the runtime alone (real
``Supervisor``, minimal behavior) and for the real ``UserActor`` (through the real
``Service``); RSS after all actors retired; three rounds; and 10 000 concurrent first
messages to one key → exactly one activation.

Part 2, over HTTP (wabot in its own process, load from ``bench.loadgen``): a population of
N distinct users; each user sends one message, which buffers (``WABOT_BUFFER_SECONDS=0.2``)
and takes a turn against the fakes at zero latency; then every actor idles out
(``WABOT_IDLE_SECONDS=1``). The population's first visit is the warm-up: it creates their
durable records (user data, which the target excludes) and warms the process; the warm
baseline is RSS once all those actors have retired. Then the same population comes back for
three rounds, so what RSS keeps after a round is runtime memory, plus the only user data
that still grows: the message ids remembered for deduplication (``wabot_dedupe_*``, reported).
RSS is sampled from ``/proc`` every 0.2 s: peak per round, and after each round.

Targets: ≤ 6 KiB runtime overhead per live actor; RSS after all actors retired within 10 %
of the warm baseline; no growth from round to round.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from typing import Any

from bench.common import (
    PYTHON,
    ROOT,
    LoadGen,
    RssSampler,
    bot_env,
    cleanup,
    mib,
    print_table,
    rss_bytes,
    start_bot,
    user_data,
    verdict,
    wait_idle,
    workdir,
    write_result,
)

TARGET_BYTES = 6 * 1024


def in_process(kind: str, actors: int) -> dict[str, Any]:
    out = subprocess.run(
        [PYTHON, "-m", "bench.actor_mem", "--kind", kind, "--actors", str(actors)],
        cwd=ROOT,
        env={**os.environ, "PYTHONMALLOC": "malloc"},  # as ``make run`` serves
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


POPULATION_BASE = 573_600_000_000


def churn(users: int, rounds: int) -> dict[str, Any]:
    base = workdir("churn")
    loadgen = LoadGen(base / "loadgen.log")
    env = bot_env(loadgen.fakes, base / "data", buffer_seconds=0.2, idle_seconds=1.0)
    bot, url = start_bot(env, base / "bot.log")
    out: dict[str, Any] = {"users_per_round": users, "rounds": []}
    try:
        with RssSampler(bot.pid) as sampler:
            out["start_rss"] = rss_bytes(bot.pid)
            first = loadgen.call(
                "round",
                3600,
                url=url + "/hook",
                users=users,
                user_base=POPULATION_BASE,
                concurrency=32,
                max_seconds=3000,
                timeout=600,
            )
            out["first_visit"] = {
                "replied": first["replied"],
                "seconds": first["seconds_to_all_replies"],
            }
            wait_idle(loadgen, url, 120)
            time.sleep(1)
            out["warm_baseline_rss"] = baseline = rss_bytes(bot.pid)
            out["warm_baseline_data"] = user_data(loadgen, url)
            for number in range(rounds):
                t0 = sampler.now()
                r = loadgen.call(
                    "round",
                    3600,
                    url=url + "/hook",
                    users=users,
                    user_base=POPULATION_BASE,
                    concurrency=32,
                    max_seconds=3000,
                    timeout=600,
                )
                pending = wait_idle(loadgen, url, 120)
                time.sleep(1)
                after = rss_bytes(bot.pid)
                out["rounds"].append(
                    {
                        "round": number + 1,
                        "acked": r["ok"],
                        "replied": r["replied"],
                        "seconds": r["seconds_to_all_replies"],
                        "turns_per_second": round(r["replied"] / r["seconds_to_all_replies"], 1),
                        "peak_rss": sampler.peak(t0),
                        "after_rss": after,
                        "after_vs_baseline": round(after / baseline, 3),
                        "pending_after": pending,
                        "user_data": user_data(loadgen, url),
                    }
                )
    finally:
        bot.stop(60)
        loadgen.close()
        cleanup(base)
    return out


def run(quick: bool) -> dict[str, Any]:
    actors = 10_000 if quick else 100_000
    churn_users = 100 if quick else 10_000
    minimal = in_process("minimal", actors)
    user = in_process("user", actors)
    churned = churn(churn_users, 3)
    rounds = churned["rounds"]
    growth = rounds[-1]["after_rss"] / rounds[0]["after_rss"]
    worst_after = max(r["after_vs_baseline"] for r in rounds)
    result = {
        "quick": quick,
        "in_process": {"minimal": minimal, "user": user},
        "churn": churned,
        "targets": {
            "runtime_bytes_per_actor": {
                "target": TARGET_BYTES,
                "measured": minimal["bytes_per_actor"],
                "met": minimal["bytes_per_actor"] <= TARGET_BYTES,
            },
            "after_retire_within_10pct": {
                "measured_churn": worst_after,
                "measured_in_process": minimal["after_vs_baseline"],
                "met": worst_after <= 1.10,
            },
            "no_growth_round_to_round": {
                "after_rss_round3_vs_round1": round(growth, 3),
                "met": growth <= 1.05,
            },
            "single_activation": {
                **minimal["single_activation"],
                "met": minimal["single_activation"]["activations"] == 1,
            },
        },
    }
    write_result("memory", result)
    rows = []
    for kind, r in (("runtime (minimal)", minimal), ("UserActor", user)):
        for i, rd in enumerate(r["rounds"]):
            rows.append(
                [
                    kind,
                    i + 1,
                    r["actors"],
                    mib(r["baseline_rss"]),
                    mib(rd["live_rss"]),
                    r["bytes_per_actor"] if i == 0 else "",
                    mib(rd["after_retire_rss"]),
                ]
            )
    print_table(
        "Actor memory, in-process (RSS MiB; bytes per idle live actor over the warm baseline)",
        ["kind", "round", "actors", "baseline", "live", "B/actor", "after retire"],
        rows,
    )
    print_table(
        f"Churn over HTTP: a population of {churn_users} users comes back for 3 rounds, one "
        f"turn each, idle 1 s (warm baseline after their first visit: "
        f"{mib(churned['warm_baseline_rss'])} MiB, "
        f"{churned['warm_baseline_data']['store_records']} records)",
        [
            "round",
            "replied",
            "seconds",
            "turns/s",
            "peak MiB",
            "after MiB",
            "after/base",
            "done ids",
        ],
        [
            [
                r["round"],
                f"{r['replied']}/{r['acked']}",
                r["seconds"],
                r["turns_per_second"],
                mib(r["peak_rss"]),
                mib(r["after_rss"]),
                r["after_vs_baseline"],
                r["user_data"]["store_done_ids"],
            ]
            for r in rounds
        ],
    )
    t = result["targets"]
    print(
        f"runtime bytes/actor <= 6 KiB: {verdict(t['runtime_bytes_per_actor']['met'])}; "
        f"after retire within 10%: {verdict(t['after_retire_within_10pct']['met'])}; "
        f"no growth: {verdict(t['no_growth_round_to_round']['met'])}; "
        f"single activation: {verdict(t['single_activation']['met'])} "
        f"({t['single_activation']['activations']} for {t['single_activation']['senders']})"
    )
    return result


if __name__ == "__main__":
    import sys

    run("--quick" in sys.argv)
