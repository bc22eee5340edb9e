"""Ingest benchmark: ``POST /hook`` throughput and ack latency, wabot vs a bare endpoint.

Subjects (each its own process, same hypercorn trio worker and config):

* **bare** — ``bench.bare_app``: quart-trio, reads and parses the same JSON, answers 200;
* **wabot** — the real server (``bench.botproc`` → ``run_server``), durable inbox on: every
  webhook is parsed, deduplicated, journaled with fsync (group commit) before the 200, and
  told to its user actor (spawning it on first sight). The buffer window is set very long
  (``WABOT_BUFFER_SECONDS=3600`` with the caps raised), so **turns do not run**: this measures
  ingest alone. Actor activations still call the fake Whapi (presence subscription).

Load: ``wrk`` (closed loop, ``-t1 -c32``, ``bench/hook.lua``: unique message ids, users drawn
from 1, 1k or 100k phone numbers; a fresh data directory per run) for throughput, and the
open-loop generator of ``bench.loadgen`` at 500 webhooks/s over 1k users for latency (from
the intended send time). Both subjects stay up while a row runs, and the row is measured in
slices that alternate with slices of the bare endpoint (bare, wabot, bare, wabot, …, bare):
each wabot slice is compared with the mean of the bare slices on either side of it, and the
row's ratio is the median over its slices (the machines this runs on drift by tens of per cent
within minutes; one long run per subject let that drift decide the ratio). Targets: wabot ≥ 80 %
of bare throughput; at 500/s p99 ≤ 250 ms and no errors.
"""

from __future__ import annotations

import re
import shutil
import statistics
import subprocess
from typing import Any

from bench.common import (
    PYTHON,
    ROOT,
    LoadGen,
    Proc,
    bot_env,
    cleanup,
    cpu_seconds,
    mib,
    print_table,
    rss_bytes,
    start_bot,
    verdict,
    workdir,
    write_result,
)

LONG_BUFFER = {
    "buffer_seconds": 3600,
    "max_wait_seconds": 3600,
    "typing_seconds": 3600,
    "max_buffered": 1_000_000,
    "max_buffered_chars": 1_000_000_000,
}
USER_COUNTS = (1, 1_000, 100_000)
OPEN_RATE = 500


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def _ms(latency: str | None) -> float:
    """wrk's latency text ("12.3ms", "1.02s", "850.00us") in milliseconds."""
    if not latency:
        return 0.0
    value = re.match(r"([\d.]+)(us|ms|s)", latency)
    if value is None:
        return 0.0
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[value.group(2)]
    return float(value.group(1)) * scale


def run_wrk(url: str, users: int, seconds: int, warmup: int) -> dict[str, Any]:
    script = str(ROOT / "bench" / "hook.lua")
    env = {"BENCH_USERS": str(users), "PATH": "/usr/bin:/bin"}
    if warmup:
        subprocess.run(
            ["wrk", "-t1", "-c32", f"-d{warmup}s", "-s", script, url],
            env=env,
            capture_output=True,
            timeout=warmup + 30,
            check=True,
        )
    out = subprocess.run(
        ["wrk", "-t1", "-c32", f"-d{seconds}s", "--latency", "-s", script, url],
        env=env,
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    lat = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.M))
    return {
        "rps": rps,
        "requests": total,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": errors.group(1).strip() if errors else "0",
        "p50": lat.get("50"),
        "p99": lat.get("99"),
    }


def run(quick: bool) -> dict[str, Any]:
    # Each wabot row runs in slices, each between two bare slices: this VM's speed drifts by
    # tens of per cent within minutes, and a slice's ratio to its neighbours cancels the drift
    # slower than a slice. The row's ratio is the median of its slices' ratios.
    n_slices, slice_seconds, warmup = (2, 2, 1) if quick else (3, 5, 3)
    open_seconds = 5 if quick else 30
    base = workdir("ingest")
    loadgen = LoadGen(base / "loadgen.log")
    rows: list[dict[str, Any]] = []
    bare_runs: list[dict[str, Any]] = []
    result: dict[str, Any] = {"quick": quick, "wrk": wrk_available()}
    try:
        if not wrk_available():
            print("wrk not found: install it with `apt-get install wrk` (make bench tries to);")
            print("the closed-loop throughput rows are skipped, the open-loop rows still run.")
        # -- bare baseline, bracketing every wabot row ----------------------------------------
        # This VM's speed drifts by tens of per cent within minutes, so each wabot row is
        # compared with the mean of the bare runs just before and just after it.
        bare = Proc([PYTHON, "-m", "bench.bare_app"], log=base / "bare.log")
        bare_url = bare.wait_ready(30)
        try:
            if wrk_available():
                bare_runs.append(run_wrk(bare_url + "/hook", 1000, slice_seconds, warmup))
            bare_open = loadgen.call(
                "openloop",
                open_seconds + 60,
                url=bare_url + "/hook",
                rate=OPEN_RATE,
                count=OPEN_RATE * open_seconds,
                max_seconds=open_seconds,
                users=1000,
            )
            # -- wabot, in slices alternating with bare slices --------------------------------
            for users in USER_COUNTS:
                if not wrk_available():
                    break
                data = base / f"data-{users}"
                bot, url = start_bot(bot_env(loadgen.fakes, data, **LONG_BUFFER), base / "bot.log")
                slices: list[dict[str, Any]] = []
                try:
                    run_wrk(url + "/hook", users, warmup, 0)
                    cpu0 = cpu_seconds(bot.pid)
                    for _ in range(n_slices):
                        before = bare_runs[-1]["rps"]
                        tp = run_wrk(url + "/hook", users, slice_seconds, 0)
                        bare_runs.append(run_wrk(bare_url + "/hook", 1000, slice_seconds, 0))
                        baseline = (before + bare_runs[-1]["rps"]) / 2
                        slices.append(
                            {**tp, "bare_rps": baseline, "ratio": round(tp["rps"] / baseline, 3)}
                        )
                    cpu = cpu_seconds(bot.pid) - cpu0  # its share of the bare slices is idle
                    metrics = loadgen.call("metrics", 30, url=url)["metrics"]
                    live, rss = metrics.get("wabot_live_actors"), mib(rss_bytes(bot.pid))
                finally:
                    bot.stop(60)
                requests = sum(x["requests"] for x in slices)
                rows.append(
                    {
                        "users": users,
                        "rps": round(statistics.mean(x["rps"] for x in slices), 2),
                        "requests": requests,
                        "non_2xx": sum(x["non_2xx"] for x in slices),
                        "socket_errors": [x["socket_errors"] for x in slices],
                        "p50": slices[len(slices) // 2]["p50"],
                        "p99": max((x["p99"] for x in slices), key=_ms),
                        "bare_rps": round(statistics.mean(x["bare_rps"] for x in slices), 2),
                        "ratio_vs_bare": round(statistics.median(x["ratio"] for x in slices), 3),
                        "slices": slices,
                        "cpu_ms_per_request": round(cpu / max(1, requests) * 1e3, 3),
                        "live_actors": live,
                        "rss_mib": rss,
                    }
                )
        finally:
            bare.stop(10)
        data = base / "data-open"
        bot, url = start_bot(bot_env(loadgen.fakes, data, **LONG_BUFFER), base / "bot.log")
        try:
            wabot_open = loadgen.call(
                "openloop",
                open_seconds + 60,
                url=url + "/hook",
                rate=OPEN_RATE,
                count=OPEN_RATE * open_seconds,
                max_seconds=open_seconds,
                users=1000,
                user_base=573_400_000_000,
            )
        finally:
            bot.stop(60)
    finally:
        loadgen.close()
        cleanup(base)
    for open_result in (bare_open, wabot_open):
        open_result.pop("event", None)
        open_result.pop("cmd", None)
    lat = wabot_open["latency"]
    errors = wabot_open["non_2xx"] + wabot_open["socket_errors"] + wabot_open["unfinished"]
    worst_ratio = min((r["ratio_vs_bare"] for r in rows), default=None)
    result.update(
        {
            "bare": {"wrk_runs": bare_runs, "open_loop": bare_open},
            "wabot": rows,
            "wabot_open_loop": wabot_open,
            "targets": {
                "throughput_ratio": {
                    "target": ">= 0.80",
                    "worst": worst_ratio,
                    "met": worst_ratio is not None and worst_ratio >= 0.8,
                },
                "open_loop_p99_ms": {
                    "target": "<= 250 at 500/s, 0 errors",
                    "p99_ms": lat["p99_ms"],
                    "errors": errors,
                    "achieved_rate": wabot_open["achieved_rate"],
                    "met": lat["p99_ms"] <= 250 and errors == 0,
                },
            },
        }
    )
    write_result("ingest", result)
    _print(result)
    return result


def _print(result: dict[str, Any]) -> None:
    rows = []
    for n, b in enumerate(result["bare"]["wrk_runs"]):
        rows.append(
            ["bare", f"run {n + 1}", b["rps"], "-", "-", b["p50"], b["p99"], b["non_2xx"], "-"]
        )
    for r in result["wabot"]:
        rows.append(
            [
                "wabot",
                r["users"],
                r["rps"],
                r["bare_rps"],
                r["ratio_vs_bare"],
                r["p50"],
                r["p99"],
                r["non_2xx"],
                r["cpu_ms_per_request"],
            ]
        )
    print_table(
        "Ingest, closed loop (wrk -t1 -c32); each wabot row in slices between bare slices "
        "(vs bare: median of the slices' ratios)",
        [
            "subject",
            "users",
            "req/s",
            "bare req/s",
            "vs bare",
            "p50",
            "p99",
            "non-2xx",
            "cpu ms/req",
        ],
        rows,
    )
    open_rows = []
    for name, o in (("bare", result["bare"]["open_loop"]), ("wabot", result["wabot_open_loop"])):
        lat = o["latency"]
        open_rows.append(
            [
                name,
                o["target_rate"],
                o["achieved_rate"],
                lat["p50_ms"],
                lat["p90_ms"],
                lat["p99_ms"],
                lat["p99.9_ms"],
                lat["max_ms"],
                o["non_2xx"] + o["socket_errors"] + o["unfinished"],
            ]
        )
    print_table(
        f"Ingest, open loop at {OPEN_RATE}/s (latency from intended send time, ms)",
        ["subject", "target/s", "achieved/s", "p50", "p90", "p99", "p99.9", "max", "errors"],
        open_rows,
    )
    t = result["targets"]
    print(
        f"throughput >= 80% of bare: {verdict(t['throughput_ratio']['met'])} "
        f"(worst {t['throughput_ratio']['worst']}); "
        f"p99 <= 250 ms at 500/s, no errors: {verdict(t['open_loop_p99_ms']['met'])}"
    )


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    run(parser.parse_args().quick)


if __name__ == "__main__":
    main()
