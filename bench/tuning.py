"""Process-wide tuning, knob by knob, at 10k live actors: ``python -m bench.tuning``.

Each knob of ``gateway/tuning.py`` and the allocator is switched off in turn against
everything on, in alternation within one run (``--rounds``), so that a knob's before/after
comes from the same run. Two parts, both in process, so that other load on the machine moves
wall-clock times but not the figures that decide (RSS, and CPU counted per thread):

- ``actor_mem``: the memory benchmark's in-process part (``bench.actor_mem``, ``user``
  kind): N real idle ``UserActor``s, three rounds of activate-all / retire-all, for each
  allocator (``PYTHONMALLOC``) with and without ``malloc_trim`` before each RSS reading;
- ``probe``: ``bench.tuning_probe`` with one knob off (or the other allocator): three bursts
  of N new actors (full collections during each: count and main-thread CPU; RSS live and after
  retirement and the trimmer), then SIGTERM's drain and close with N live actors, then the
  process exit, timed from outside.

The end-to-end figures (drain over HTTP, soak) stay with ``bench.drain`` and ``bench.soak``.
``--quick``: 1 000 actors. Results: ``bench/results/tuning.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from typing import Any

from bench.common import PYTHON, ROOT, Proc, cleanup, mib, print_table, workdir, write_result

ACTOR_MEM_VARIANTS: dict[str, tuple[str, bool]] = {
    "malloc + trim (all on)": ("malloc", True),
    "pymalloc + trim": ("pymalloc", True),
    "malloc, no trim": ("malloc", False),
    "pymalloc, no trim": ("pymalloc", False),
}
#: name -> (PYTHONMALLOC, knobs off)
PROBE_VARIANTS: dict[str, tuple[str, str]] = {
    "all on": ("malloc", ""),
    "pymalloc": ("pymalloc", ""),
    "no trim": ("malloc", "trim"),
    "no pacing": ("malloc", "pacing"),
    "no freeze": ("malloc", "freeze"),
    "no pacing, no freeze": ("malloc", "pacing,freeze"),
    "no stop_collecting": ("malloc", "stop_collecting"),
}


def actor_mem_variant(name: str, actors: int) -> dict[str, Any]:
    allocator, trim = ACTOR_MEM_VARIANTS[name]
    out = subprocess.run(
        [PYTHON, "-m", "bench.actor_mem", "--kind", "user", "--actors", str(actors)]
        + ([] if trim else ["--no-trim"]),
        cwd=ROOT,
        env={**os.environ, "PYTHONMALLOC": allocator},
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
    ).stdout
    return {"variant": name, **json.loads(out.strip().splitlines()[-1])}


def probe_variant(name: str, actors: int) -> dict[str, Any]:
    allocator, off = PROBE_VARIANTS[name]
    base = workdir("tuning")
    probe = Proc(
        [PYTHON, "-m", "bench.tuning_probe", "--actors", str(actors), "--off", off],
        env={"PYTHONMALLOC": allocator},
        log=base / "probe.log",
    )
    result = json.loads(probe.readline(900))
    assert probe.readline(60).strip() == "PROBE-EXITING"
    started = time.monotonic()
    code = probe.wait(120)
    result["exit_seconds"] = round(time.monotonic() - started, 3)
    result["exit_code"] = code
    probe.stop(5)
    cleanup(base)  # the probe's log, kept only when it failed
    return {"variant": name, **result}


def run(
    quick: bool, rounds: int, only: list[str] | None, names: list[str] | None = None
) -> dict[str, Any]:
    actors = 1_000 if quick else 10_000
    result: dict[str, Any] = {"quick": quick, "actors": actors, "actor_mem": [], "probe": []}
    parts = only or ["actor_mem", "probe"]
    for number in range(rounds):
        for part, variants, measure in (
            ("actor_mem", ACTOR_MEM_VARIANTS, actor_mem_variant),
            ("probe", PROBE_VARIANTS, probe_variant),
        ):
            if part not in parts:
                continue
            for name in [n for n in variants if not names or n in names]:
                print(f"{part}, round {number + 1}: {name}", flush=True)
                result[part].append(measure(name, actors))
                write_result("tuning", result)
    _print(result)
    return result


def _print(result: dict[str, Any]) -> None:
    actors = result["actors"]
    if result["actor_mem"]:
        print_table(
            f"bench.actor_mem, {actors} idle UserActors, 3 rounds (RSS MiB)",
            ["variant", "baseline", "B/actor", "live 1", "after 1", "after 3", "after/base"],
            [
                [
                    r["variant"],
                    mib(r["baseline_rss"]),
                    r["bytes_per_actor"],
                    mib(r["rounds"][0]["live_rss"]),
                    mib(r["rounds"][0]["after_retire_rss"]),
                    mib(r["rounds"][-1]["after_retire_rss"]),
                    r["after_vs_baseline"],
                ]
                for r in result["actor_mem"]
            ],
        )
    if result["probe"]:
        print_table(
            f"bench.tuning_probe, bursts of {actors} new actors (RSS MiB; full GCs and their "
            "main-thread CPU s, per burst; stop = drain and close with all live; exit = after it)",
            [
                "variant",
                "full GCs",
                "GC CPU s",
                "GC max s",
                "burst CPU s",
                "live RSS",
                "after RSS",
                "stop s",
                "stop GCs",
                "exit s",
            ],
            [
                [
                    r["variant"],
                    "/".join(str(b["full_gcs"]) for b in r["bursts"]),
                    "/".join(str(b["full_gc_cpu"]) for b in r["bursts"]),
                    r["full_gc_cpu_max"],
                    "/".join(str(b["cpu_seconds"]) for b in r["bursts"]),
                    mib(r["bursts"][0]["live_rss"]),
                    "/".join(str(mib(b["after_retire_rss"])) for b in r["bursts"]),
                    r["stop"]["seconds"],
                    f"{r['stop']['full_gcs']} ({r['stop']['full_gc_cpu']} s)",
                    r["exit_seconds"],
                ]
                for r in result["probe"]
            ],
        )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.tuning", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=1, help="alternations of the variants")
    parser.add_argument("--only", choices=("actor_mem", "probe"), action="append")
    parser.add_argument("--variant", action="append", help="only these variants (by name)")
    args = parser.parse_args()
    run(args.quick, args.rounds, args.only, args.variant)


if __name__ == "__main__":
    main()
