"""One run of a realistic-latency benchmark: fakes with real latency, wabot, customers.

``run_schedule`` starts the load process (``bench.loadgen``: the fakes and the generator), gives
the fakes their `Realism` (the issue's latencies: model lognormal median 3 s / p99 15 s, Whapi
sends median 250 ms / p99 1 s, seeded; optionally the OpenAI account's rate limits), starts
wabot as its own process (``bench.botproc``) pointed at them with the given settings, runs one
``customers`` command (``bench.campaign_load``) and returns its summary with what the runner
measured from ``/proc``: the bot's peak RSS (sampled every 0.2 s), the bot's and the load
process's CPU time. Used by ``bench.campaign``, ``bench.capacity`` and ``bench.ratebudget``.
"""

from __future__ import annotations

from typing import Any

from bench.common import (
    LoadGen,
    RssSampler,
    bot_env,
    cleanup,
    cpu_seconds,
    start_bot,
    workdir,
)
from sandbox.realism import Realism

#: The fakes' latencies of every realistic benchmark (the seed makes runs reproducible).
REALISTIC = Realism.realistic(seed=22)


def run_schedule(
    name: str,
    schedule: dict[str, Any],
    *,
    realism: Realism = REALISTIC,
    buffer_seconds: float,
    wait_seconds: float,
    bot_settings: dict[str, Any] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """Run ``schedule`` against a fresh wabot; the ``customers`` summary plus /proc figures."""
    base = workdir(name)
    loadgen = LoadGen(base / "loadgen.log")
    try:
        loadgen.call("realism", 10, **realism.to_json())
        settings = {"buffer_seconds": buffer_seconds, **(bot_settings or {})}
        bot, url = start_bot(bot_env(loadgen.fakes, base / "data", **settings), base / "bot.log")
        try:
            bot_cpu0 = cpu_seconds(bot.pid)
            load_cpu0 = cpu_seconds(loadgen.pid)
            with RssSampler(bot.pid) as rss:
                result = loadgen.call(
                    "customers",
                    # Sending (at most 300 s of schedule), its acks, then the answers.
                    300 + float(spec.get("send_deadline", 300)) + wait_seconds + 60,
                    url=url,
                    bot_pid=bot.pid,
                    schedule=schedule,
                    buffer_seconds=buffer_seconds,
                    settle_seconds=wait_seconds,
                    **spec,
                )
            result["bot_cpu_seconds_proc"] = round(cpu_seconds(bot.pid) - bot_cpu0, 2)
            result["load_cpu_seconds_proc"] = round(cpu_seconds(loadgen.pid) - load_cpu0, 2)
            result["bot_rss_peak_bytes_proc"] = rss.peak()
            result["bot_settings"] = settings
            result["realism"] = realism.to_json()
        finally:
            bot.stop(60)
    finally:
        loadgen.close()
        cleanup(base)
    for key in ("event", "cmd"):
        result.pop(key, None)
    return result


def in_flight_figure(result: dict[str, Any]) -> tuple[Any, str]:
    """Peak turns in flight and where it came from (wabot's gauge, else the fake's count)."""
    if result.get("turns_in_flight_peak") is not None:
        return result["turns_in_flight_peak"], "wabot_turns_in_flight"
    return result["fake_model_in_flight_peak"], "fake model calls in flight (no gauge)"


def cores_peak(samples: list[dict[str, Any]], key: str, window: float = 2.0) -> float | None:
    """The most CPU cores the process (``bot_cpu`` or ``load_cpu``) used over ``window`` s."""
    best: float | None = None
    start = 0
    for end in range(len(samples)):
        while samples[end]["t"] - samples[start]["t"] > window:
            start += 1
        span = samples[end]["t"] - samples[start]["t"]
        if span >= window / 2:
            cores = (samples[end][key] - samples[start][key]) / span
            best = cores if best is None else max(best, cores)
    return None if best is None else round(best, 2)


def cpu_ms_per_turn(result: dict[str, Any]) -> float | None:
    turns = result.get("turns") or 0
    return round(result["bot_cpu_seconds_proc"] / turns * 1e3, 2) if turns else None
