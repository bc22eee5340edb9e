"""Rate-limit budget: a campaign above the OpenAI account's 600 requests per minute.

The fake OpenAI account allows 600 requests per minute (``sandbox.realism``: a bucket of 600
refilled continuously, 429 ``rate_limit_exceeded`` past it) and wabot is told the same budget
(``WABOT_OPENAI_REQUESTS_PER_MINUTE=600``); the fakes have their realistic latencies and wabot a
3 s buffer. The campaign (``bench.campaign_load``): 2 400 customers within 60 s (quick: 1 000
within 30 s), one to three messages each, about 1.6 (quick 1.3) times what the account allows in
that time, its first 600 included. Reported: the 429s the fake answered (target: at most the
first few, no storm), fairness as the spread of the customers' waits (queueing = wait − buffer
− the model's own latency, and the raw wait: p50/p99/max and max ÷ median) and whether every
acknowledged message was answered.
"""

from __future__ import annotations

from typing import Any

import attrs

from bench.common import print_table, verdict, write_result
from bench.realistic import REALISTIC, cores_peak, cpu_ms_per_turn, run_schedule

BUFFER_SECONDS = 3.0
RPM = 600
#: "At most the first few" 429s.
FEW = 5


def run(quick: bool) -> dict[str, Any]:
    customers, window, mean = (1_000, 30.0, 10.0) if quick else (2_400, 60.0, 20.0)
    schedule = {
        "kind": "campaign",
        "customers": customers,
        "window": window,
        "mean_arrival": mean,
        "gap_min": 0.5,
        "gap_max": 2.5,
        "seed": 25,
    }
    print(
        f"ratebudget ({'quick' if quick else 'full'}): {customers} customers within {window:.0f} s"
        f", account and bot at {RPM} requests/min, buffer {BUFFER_SECONDS} s"
    )
    realism = attrs.evolve(REALISTIC, requests_per_minute=RPM)
    r = run_schedule(
        "ratebudget",
        schedule,
        realism=realism,
        buffer_seconds=BUFFER_SECONDS,
        wait_seconds=600 if quick else 900,
        bot_settings={"openai_requests_per_minute": RPM},
        connections=1024,
    )
    q, w = r["queueing"], r["wait"]

    def ratio(s: dict[str, float]) -> float | None:
        return round(s["max"] / s["p50"], 2) if s["n"] and s["p50"] > 0 else None

    lost = r["messages_acked_unanswered"]
    storms = r["rate_limited_429"]
    met = storms <= FEW and lost == 0 and r["customers_answered"] == r["customers_acked"]
    result = {
        "quick": quick,
        "run": r,
        "fairness": {"queueing_max_over_p50": ratio(q), "wait_max_over_p50": ratio(w)},
        "target": {"max_429": FEW, "measured_429": storms, "acked_unanswered": lost, "met": met},
    }
    write_result("ratebudget.quick" if quick else "ratebudget", result)
    print_table(
        f"Rate budget: {RPM} requests/min, {r['turns']} model calls for {r['customers']} customers",
        [
            "429s",
            "turns",
            "answered",
            "acked unanswered",
            "q p50 s",
            "q p99 s",
            "q max s",
            "q max/p50",
            "wait p50 s",
            "wait p99 s",
            "wait max s",
            "cpu ms/turn",
            "bot cores peak",
            "load cores peak",
            "all answered after s",
        ],
        [
            [
                storms,
                r["turns"],
                r["customers_answered"],
                lost,
                q["p50"],
                q["p99"],
                q["max"],
                ratio(q),
                w["p50"],
                w["p99"],
                w["max"],
                cpu_ms_per_turn(r),
                cores_peak(r["samples"], "bot_cpu"),
                cores_peak(r["samples"], "load_cpu"),
                r["answered_seconds"],
            ]
        ],
    )
    print(f"at most {FEW} 429s, every acked message answered: {verdict(met)} ({storms} 429s)")
    return result


if __name__ == "__main__":
    import sys

    run("--quick" in sys.argv)
