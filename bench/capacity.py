"""Capacity: a rising arrival rate of new customers until wabot sheds, then three times that rate.

Against the fakes' realistic latencies (``bench.realistic``), buffer 1 s, wabot's defaults
otherwise. Phase 1 (ramp): one message from each new customer at a rate rising linearly from
10/s to 400/s over 60 s (quick: to 150/s over 20 s), stopped 3 s after the first 503 (wabot
answers overload with 503 + ``Retry-After`` and counts it in ``wabot_webhooks_shed_total``).
At that point: the offered rate, turns completed per second over the 5 s before it, the bot's
CPU use over those 5 s (cores, from ``/proc``) and turns per second per core = turns/s ÷ cores
used (target ≥ 100); beside it the whole ramp's turns per CPU-second of the bot. Without any
503 the point is the 5 s with the most turns completed, and the result says so.

Phase 2: a fresh wabot at three times that rate for 30 s (quick 10 s), every non-200 retried as
Whapi would (backoff 1, 2, 4 … 30 s with jitter, up to 10 attempts): ack latency p99 over every
answer (200 or 503; target ≤ 1 s) and zero acknowledged lost (every 200-acknowledged message
answered by the end).
"""

from __future__ import annotations

from typing import Any

from bench.campaign_load import ramp_rate
from bench.common import mib, print_table, verdict, write_result
from bench.realistic import cores_peak, cpu_ms_per_turn, in_flight_figure, run_schedule

BUFFER_SECONDS = 1.0
WINDOW = 5


def _cpu_between(samples: list[dict[str, Any]], start: float, end: float) -> float | None:
    """The bot's CPU cores used between two times of the run (from the sampler's readings)."""
    inside = [s for s in samples if start <= s["t"] <= end]
    if len(inside) < 2 or inside[-1]["t"] <= inside[0]["t"]:
        return None
    return (inside[-1]["bot_cpu"] - inside[0]["bot_cpu"]) / (inside[-1]["t"] - inside[0]["t"])


def knee(ramp: dict[str, Any]) -> dict[str, Any]:
    """The point of the ramp the capacity is read at (first 503, else the busiest 5 s)."""
    rows = {r["t"]: r for r in ramp["per_second"]}
    completed = [rows.get(t, {}).get("replies", 0) for t in range(max(rows, default=0) + 1)]
    if ramp["first_shed_at"] is not None:
        end = int(ramp["first_shed_at"])
        source = "first 503"
    else:
        sums = [sum(completed[t - WINDOW : t]) for t in range(WINDOW, len(completed) + 1)]
        end = WINDOW + max(range(len(sums)), key=sums.__getitem__) if sums else WINDOW
        source = "no 503: the 5 s with the most turns completed"
    start = max(0, end - WINDOW)
    turns_per_second = sum(completed[start:end]) / max(1, end - start)
    cores = _cpu_between(ramp["samples"], start, end)
    return {
        "source": source,
        "at_seconds": end,
        "offered_rate": round(ramp_rate(ramp["schedule"], end), 1),
        "turns_per_second": round(turns_per_second, 1),
        "bot_cores": None if cores is None else round(cores, 2),
        "turns_per_second_per_core": None if not cores else round(turns_per_second / cores, 1),
    }


def run(quick: bool) -> dict[str, Any]:
    end_rate, seconds, overload_seconds = (150.0, 20.0, 10.0) if quick else (400.0, 60.0, 30.0)
    ramp_spec = {"kind": "ramp", "start_rate": 10.0, "end_rate": end_rate, "seconds": seconds}
    print(
        f"capacity ({'quick' if quick else 'full'}): ramp 10 -> {end_rate:.0f} new customers/s "
        f"over {seconds:.0f} s, then 3x the shed rate for {overload_seconds:.0f} s; buffer "
        f"{BUFFER_SECONDS} s, model median 3 s / p99 15 s"
    )
    ramp = run_schedule(
        "capacity-ramp",
        ramp_spec,
        buffer_seconds=BUFFER_SECONDS,
        wait_seconds=300,
        stop_after_shed=3.0,
        max_attempts=8,
        connections=1024,
        seed=23,
    )
    point = knee(ramp)
    rate = 3 * (
        point["offered_rate"] if ramp["first_shed_at"] is not None else point["turns_per_second"]
    )
    overload = run_schedule(
        "capacity-overload",
        {"kind": "steady", "rate": max(1.0, rate), "seconds": overload_seconds},
        buffer_seconds=BUFFER_SECONDS,
        wait_seconds=600,
        max_attempts=10,
        connections=1024,
        send_deadline=overload_seconds + 400,
        seed=24,
    )
    lost = overload["messages_acked_unanswered"]
    ack_p99 = overload["ack_latency"]["p99_ms"]
    per_core = point["turns_per_second_per_core"]
    ramp_ms = cpu_ms_per_turn(ramp)
    result = {
        "quick": quick,
        # The whole ramp's figure beside the point's: turns one fully used core would do.
        "ramp_turns_per_cpu_second": round(1000 / ramp_ms, 1) if ramp_ms else None,
        "ramp_load_cores_peak_2s": cores_peak(ramp["samples"], "load_cpu"),
        "overload_load_cores_peak_2s": cores_peak(overload["samples"], "load_cpu"),
        "ramp": ramp,
        "knee": point,
        "overload_rate": round(rate, 1),
        "overload": overload,
        "target": {
            "turns_per_second_per_core": 100,
            "measured_turns_per_second_per_core": per_core,
            "ack_p99_ms": 1000,
            "measured_ack_p99_ms": ack_p99,
            "acked_unanswered": lost,
            "shed_seen": ramp["first_shed_at"] is not None,
            "met": bool(
                ramp["first_shed_at"] is not None
                and per_core is not None
                and per_core >= 100
                and ack_p99 <= 1000
                and lost == 0
            ),
        },
    }
    write_result("capacity.quick" if quick else "capacity", result)
    print_table(
        "Capacity: the ramp's point",
        [
            "read at",
            "t s",
            "offered/s",
            "turns/s",
            "bot cores",
            "turns/s/core",
            "503s",
            "shed",
            "load cores peak",
            "ramp turns/cpu-s",
        ],
        [
            [
                point["source"],
                point["at_seconds"],
                point["offered_rate"],
                point["turns_per_second"],
                point["bot_cores"],
                per_core,
                ramp["attempt_statuses"].get("503", 0),
                ramp["shed_total"],
                result["ramp_load_cores_peak_2s"],
                result["ramp_turns_per_cpu_second"],
            ]
        ],
    )
    peak, source = in_flight_figure(overload)
    print_table(
        f"Capacity: {rate:.0f} new customers/s for {overload_seconds:.0f} s (3x), 503s retried",
        [
            "messages",
            "acked",
            "acked unanswered",
            "answers",
            "503s",
            "ack p50 ms",
            "ack p99 ms",
            "peak in flight",
            "cpu ms/turn",
            "peak RSS MiB",
            "bot cores peak",
            "load cores peak",
        ],
        [
            [
                overload["messages_sent"],
                overload["messages_acked"],
                lost,
                sum(overload["attempt_statuses"].values()),
                overload["attempt_statuses"].get("503", 0),
                overload["ack_latency"]["p50_ms"],
                ack_p99,
                peak,
                cpu_ms_per_turn(overload),
                mib(overload["bot_rss_peak_bytes_proc"]),
                cores_peak(overload["samples"], "bot_cpu"),
                cores_peak(overload["samples"], "load_cpu"),
            ]
        ],
    )
    print(f"peak turns in flight from: {source}")
    print(
        f">= 100 turns/s/core at the first 503, ack p99 <= 1 s at 3x, 0 acked lost: "
        f"{verdict(result['target']['met'])} ({per_core} turns/s/core, {point['source']}; "
        f"ack p99 {ack_p99} ms; {lost} lost)"
    )
    return result


if __name__ == "__main__":
    import sys

    run("--quick" in sys.argv)
