"""Benchmark runner: ``python -m bench --quick|--full [--only NAME]``.

Runs ingest, memory, overhead, store, drain, soak and speech in turn (each prints its table and
writes ``bench/results/<name>.json``); one failing benchmark is reported and the others
still run. The benchmarks against fakes with real latency (issue 22: ``campaign``,
``capacity``, ``ratebudget``; minutes each, ``--quick`` ones too) run only when named with
``--only``. Dirty data is flushed to disk (``sync``) before each benchmark starts.
``--quick`` (``make bench``) finishes in about three minutes with reduced sizes that each
benchmark states; ``--full`` (``make bench-full``) takes about 35 minutes.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

import trio

from bench import (
    campaign,
    capacity,
    drain,
    ingest,
    memory,
    overhead,
    ratebudget,
    soak,
    speech,
    store_bench,
)
from bench.common import machine


def _store(quick: bool) -> dict[str, Any]:
    return trio.run(store_bench.run, quick)


BENCHMARKS: dict[str, Callable[[bool], dict[str, Any]]] = {
    "ingest": ingest.run,
    "memory": memory.run,
    "overhead": overhead.run,
    "store": _store,
    "drain": drain.run,
    "soak": soak.run,
    "speech": speech.run,
    "campaign": campaign.run,
    "capacity": capacity.run,
    "ratebudget": ratebudget.run,
}
#: Run only when named (``--only``): the realistic-latency benchmarks.
ON_REQUEST = frozenset({"campaign", "capacity", "ratebudget"})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="reduced sizes (default)")
    mode.add_argument("--full", action="store_true", help="full sizes (~35 min)")
    parser.add_argument("--only", choices=sorted(BENCHMARKS), action="append")
    args = parser.parse_args(argv)
    quick = not args.full
    names = args.only or [name for name in BENCHMARKS if name not in ON_REQUEST]
    info = machine()
    print(
        f"wabot benchmarks ({'quick' if quick else 'full'}): {info['nproc']} CPUs, {info['cpu']}, "
        f"Python {info['python']}, {info['date']}"
    )
    failed: list[str] = []
    started = time.monotonic()
    for name in names:
        print(f"\n=== {name} ===", flush=True)
        # The previous benchmark's written and deleted files: their writeback and discards
        # would otherwise land in this one's fsyncs.
        os.sync()
        t0 = time.monotonic()
        try:
            BENCHMARKS[name](quick)
        except Exception:
            traceback.print_exc()
            failed.append(name)
        print(f"({name}: {time.monotonic() - t0:.0f} s)", flush=True)
    print(f"\nall done in {time.monotonic() - started:.0f} s; results in bench/results/")
    if failed:
        print(f"FAILED: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
