"""Campaign: customers answer a broadcast within a minute, against fakes with real latency.

Full: 10 000 customers answer within 60 s (quick: 1 000 within 20 s); first messages arrive at
a rate decaying exponentially after the broadcast (mean 20 s; quick 7 s), each customer sends
one to three messages 0.5–2.5 s apart (``bench.campaign_load``). wabot runs with its defaults
but a 3 s buffer (every customer's messages fall in one buffer), against the fakes' realistic
latencies (``bench.realistic``: model median 3 s / p99 15 s, Whapi sends median 250 ms).

Per customer: queueing = (first reply part naming their last message − that message's send
time) − buffer − the fake model's injected latency of their calls within that wait: what wabot
adds. Target: p99 ≤ 2 s while CPU is below saturation. Also: peak turns in flight (wabot's
``wabot_turns_in_flight`` gauge, sampled every 0.5 s; the fake model's calls in flight when the
gauge is absent), bot CPU per turn, the bot's peak RSS, acknowledged vs answered.
"""

from __future__ import annotations

from typing import Any

from bench.common import mib, print_table, verdict, write_result
from bench.realistic import cores_peak, cpu_ms_per_turn, in_flight_figure, run_schedule

BUFFER_SECONDS = 3.0


def run(quick: bool) -> dict[str, Any]:
    customers, window, mean = (1_000, 20.0, 7.0) if quick else (10_000, 60.0, 20.0)
    schedule = {
        "kind": "campaign",
        "customers": customers,
        "window": window,
        "mean_arrival": mean,
        "gap_min": 0.5,
        "gap_max": 2.5,
        "seed": 22,
    }
    print(
        f"campaign ({'quick' if quick else 'full'}): {customers} customers within {window:.0f} s, "
        f"1-3 messages each, buffer {BUFFER_SECONDS} s, model median 3 s / p99 15 s"
    )
    r = run_schedule(
        "campaign",
        schedule,
        buffer_seconds=BUFFER_SECONDS,
        wait_seconds=300 if quick else 900,
        connections=1024,
    )
    peak, peak_source = in_flight_figure(r)
    elapsed = max(r["answered_seconds"], 1e-9)
    bot_cores = r["bot_cpu_seconds_proc"] / elapsed
    bot_peak = cores_peak(r["samples"], "bot_cpu")
    load_peak = cores_peak(r["samples"], "load_cpu")
    lost = r["messages_acked_unanswered"]
    q = r["queueing"]
    met = q["n"] > 0 and q["p99"] <= 2.0 and lost == 0
    result = {
        "quick": quick,
        "run": r,
        "target": {
            "queueing_p99_s": 2.0,
            "measured_queueing_p99_s": q["p99"],
            "bot_cpu_cores_mean": round(bot_cores, 2),
            "bot_cpu_cores_peak_2s": bot_peak,
            "load_cpu_cores_peak_2s": load_peak,
            "acked_unanswered": lost,
            "met": met,
        },
        "turns_in_flight_source": peak_source,
    }
    write_result("campaign.quick" if quick else "campaign", result)
    print_table(
        "Campaign: what wabot adds to a customer's wait (s)",
        ["customers", "answered", "q p50", "q p90", "q p99", "q max", "wait p50", "wait p99"],
        [
            [
                r["customers"],
                r["customers_answered"],
                q["p50"],
                q["p90"],
                q["p99"],
                q["max"],
                r["wait"]["p50"],
                r["wait"]["p99"],
            ]
        ],
    )
    print_table(
        "Campaign: the bot",
        [
            "messages acked",
            "acked unanswered",
            "turns",
            "peak in flight",
            "cpu ms/turn",
            "bot cores mean/peak",
            "peak RSS MiB",
            "ack p99 ms",
            "load cpu s",
            "load cores peak",
            "answered after s",
        ],
        [
            [
                r["messages_acked"],
                lost,
                r["turns"],
                peak,
                cpu_ms_per_turn(r),
                f"{bot_cores:.2f}/{bot_peak}",
                mib(r["bot_rss_peak_bytes_proc"]),
                r["ack_latency"]["p99_ms"],
                r["load_cpu_seconds_proc"],
                load_peak,
                r["answered_seconds"],
            ]
        ],
    )
    print(f"peak turns in flight from: {peak_source}")
    print(f"queueing p99 <= 2 s, 0 acked lost: {verdict(met)} ({q['p99']} s, {lost} lost)")
    return result


if __name__ == "__main__":
    import sys

    run("--quick" in sys.argv)
