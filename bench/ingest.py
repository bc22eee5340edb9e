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
the intended send time). The bare endpoint's throughput is measured before, between and after
the wabot rows, and each wabot row is compared with the mean of the bare runs on either side of
it (the machines this runs on drift by tens of per cent within minutes). Targets: wabot ≥ 80 %
of bare throughput; at 500/s p99 ≤ 250 ms and no errors.
"""

from __future__ import annotations

import re
import shutil
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
    seconds, warmup = (3, 1) if quick else (15, 3)
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
                bare_runs.append(run_wrk(bare_url + "/hook", 1000, seconds, warmup))
            bare_open = loadgen.call(
                "openloop",
                open_seconds + 60,
                url=bare_url + "/hook",
                rate=OPEN_RATE,
                count=OPEN_RATE * open_seconds,
                max_seconds=open_seconds,
                users=1000,
            )
            # -- wabot ---------------------------------------------------------------------
            for users in USER_COUNTS:
                if not wrk_available():
                    break
                data = base / f"data-{users}"
                bot, url = start_bot(bot_env(loadgen.fakes, data, **LONG_BUFFER), base / "bot.log")
                try:
                    cpu0 = cpu_seconds(bot.pid)
                    tp = run_wrk(url + "/hook", users, seconds, warmup)
                    cpu = cpu_seconds(bot.pid) - cpu0
                    metrics = loadgen.call("metrics", 30, url=url)["metrics"]
                    live, rss = metrics.get("wabot_live_actors"), mib(rss_bytes(bot.pid))
                finally:
                    bot.stop(60)
                before = bare_runs[-1]["rps"]
                bare_runs.append(run_wrk(bare_url + "/hook", 1000, seconds, warmup))
                baseline = (before + bare_runs[-1]["rps"]) / 2
                rows.append(
                    {
                        "users": users,
                        **tp,
                        "bare_rps": round(baseline, 2),
                        "ratio_vs_bare": round(tp["rps"] / baseline, 3),
                        "cpu_ms_per_request": round(cpu / max(1, tp["requests"]) * 1e3, 3),
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
        "Ingest, closed loop (wrk -t1 -c32); bare runs before, between and after the wabot rows",
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
