"""Ingest benchmark: ``POST /hook`` throughput and ack latency, wabot vs a bare endpoint.

Subjects (each its own process, same hypercorn trio worker and config):

* **bare** — ``bench.bare_app``: quart-trio, reads and parses the same JSON, answers 200;
* **wabot** — the real server (``bench.botproc`` → ``run_server``), durable inbox on: every
  webhook is parsed, deduplicated, journaled with fsync (group commit) before the 200, and
  told to its user actor (spawning it on first sight). The buffer window is set very long
  (``WABOT_BUFFER_SECONDS=3600`` with the caps raised), so **turns do not run**: this measures
  ingest alone. Actor activations still call the fake Whapi (presence subscription).
  ``--hook endpoint --hook route`` runs one such subject per way of serving ``POST /hook``
  (``bench.botproc``'s ``BENCH_HOOK``), their slices taking turns between the same bare slices.

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


def _ms_each(cpu_seconds: float, requests: int) -> float:
    return round(cpu_seconds / max(1, requests) * 1e3, 3)


def _errors(open_result: dict[str, Any]) -> int:
    return int(open_result["non_2xx"] + open_result["socket_errors"] + open_result["unfinished"])


def _row(
    users: int,
    hook: str,
    slices: list[dict[str, Any]],
    cpu: float,
    live: Any,
    rss: float,
) -> dict[str, Any]:
    requests = sum(x["requests"] for x in slices)
    return {
        "users": users,
        "hook": hook,
        "rps": round(statistics.mean(x["rps"] for x in slices), 2),
        "requests": requests,
        "non_2xx": sum(x["non_2xx"] for x in slices),
        "socket_errors": [x["socket_errors"] for x in slices],
        "p50": slices[len(slices) // 2]["p50"],
        "p99": max((x["p99"] for x in slices), key=_ms),
        "bare_rps": round(statistics.mean(x["bare_rps"] for x in slices), 2),
        "ratio_vs_bare": round(statistics.median(x["ratio"] for x in slices), 3),
        "slices": slices,
        "cpu_ms_per_request": _ms_each(cpu, requests),
        "live_actors": live,
        "rss_mib": rss,
    }


def run(quick: bool, hooks: tuple[str, ...] = ("endpoint",)) -> dict[str, Any]:
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

        def bare_slice() -> None:
            cpu0 = cpu_seconds(bare.pid)
            tp = run_wrk(bare_url + "/hook", 1000, slice_seconds, 0)
            tp["cpu_ms_per_request"] = _ms_each(cpu_seconds(bare.pid) - cpu0, tp["requests"])
            bare_runs.append(tp)

        try:
            if wrk_available():
                run_wrk(bare_url + "/hook", 1000, warmup, 0)
                bare_slice()
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
            # With several hooks, one subject per hook is up for the row and their slices take
            # turns: bare, hook 1, bare, hook 2, bare, hook 1, ...
            for users in USER_COUNTS:
                if not wrk_available():
                    break
                bots: dict[str, tuple[Proc, str]] = {}
                slices: dict[str, list[dict[str, Any]]] = {kind: [] for kind in hooks}
                cpu: dict[str, float] = {}
                try:
                    for kind in hooks:
                        env = bot_env(loadgen.fakes, base / f"data-{users}-{kind}", **LONG_BUFFER)
                        env["BENCH_HOOK"] = kind
                        bots[kind] = start_bot(env, base / f"bot-{kind}.log")
                        run_wrk(bots[kind][1] + "/hook", users, warmup, 0)
                        cpu[kind] = -cpu_seconds(bots[kind][0].pid)
                    for _ in range(n_slices):
                        for kind in hooks:
                            before = bare_runs[-1]["rps"]
                            tp = run_wrk(bots[kind][1] + "/hook", users, slice_seconds, 0)
                            bare_slice()
                            baseline = (before + bare_runs[-1]["rps"]) / 2
                            ratio = round(tp["rps"] / baseline, 3)
                            slices[kind].append({**tp, "bare_rps": baseline, "ratio": ratio})
                    # Each subject's CPU over the row: its share of the other slices is idle.
                    stats = {}
                    for kind, (bot, url) in bots.items():
                        cpu[kind] += cpu_seconds(bot.pid)
                        metrics = loadgen.call("metrics", 30, url=url)["metrics"]
                        stats[kind] = (metrics.get("wabot_live_actors"), mib(rss_bytes(bot.pid)))
                finally:
                    for bot, _url in bots.values():
                        bot.stop(60)
                for kind in hooks:
                    rows.append(_row(users, kind, slices[kind], cpu[kind], *stats[kind]))
        finally:
            bare.stop(10)
        wabot_open: dict[str, Any] = {}
        for n, kind in enumerate(hooks):
            env = bot_env(loadgen.fakes, base / f"data-open-{kind}", **LONG_BUFFER)
            bot, url = start_bot({**env, "BENCH_HOOK": kind}, base / f"bot-{kind}.log")
            try:
                wabot_open[kind] = loadgen.call(
                    "openloop",
                    open_seconds + 60,
                    url=url + "/hook",
                    rate=OPEN_RATE,
                    count=OPEN_RATE * open_seconds,
                    max_seconds=open_seconds,
                    users=1000,
                    user_base=573_400_000_000 + n * 1_000_000,
                )
            finally:
                bot.stop(60)
    finally:
        loadgen.close()
        cleanup(base)
    for open_result in (bare_open, *wabot_open.values()):
        open_result.pop("event", None)
        open_result.pop("cmd", None)
    worst_ratio = min((r["ratio_vs_bare"] for r in rows), default=None)
    open_met = {
        kind: o["latency"]["p99_ms"] <= 250 and _errors(o) == 0 for kind, o in wabot_open.items()
    }
    result.update(
        {
            "hooks": list(hooks),
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
                    "p99_ms": {k: o["latency"]["p99_ms"] for k, o in wabot_open.items()},
                    "errors": {k: _errors(o) for k, o in wabot_open.items()},
                    "achieved_rate": {k: o["achieved_rate"] for k, o in wabot_open.items()},
                    "met": all(open_met.values()),
                },
            },
        }
    )
    # A comparison of hooks is a result of its own, beside the benchmark's usual one.
    write_result("ingest" if len(hooks) == 1 else "ingest-hooks", result)
    _print(result)
    return result


def _print(result: dict[str, Any]) -> None:
    rows = []
    for n, b in enumerate(result["bare"]["wrk_runs"]):
        rows.append(
            [
                "bare",
                f"run {n + 1}",
                b["rps"],
                "-",
                "-",
                b["p50"],
                b["p99"],
                b["non_2xx"],
                b.get("cpu_ms_per_request", "-"),
            ]
        )
    for r in result["wabot"]:
        rows.append(
            [
                f"wabot ({r['hook']})",
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
    subjects = [("bare", result["bare"]["open_loop"])]
    subjects += [(f"wabot ({kind})", o) for kind, o in result["wabot_open_loop"].items()]
    for name, o in subjects:
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
                _errors(o),
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
    parser.add_argument(
        "--hook",
        action="append",
        choices=["endpoint", "route"],
        help="how wabot serves POST /hook (botproc's BENCH_HOOK); repeat to compare in one run",
    )
    args = parser.parse_args()
    run(args.quick, tuple(args.hook or ["endpoint"]))


if __name__ == "__main__":
    main()
