"""Store benchmark: mutation throughput, commit latency, compaction time and event-loop stalls.

Run ``python -m bench.store_bench [--quick]``. For each store size (1k, 100k, 1M records;
``--quick``: 1k and 100k) it pre-writes a snapshot, opens the store (load time), runs
concurrent ``put`` writers (throughput: median of 3 rounds; p50/p99 latency of an awaited,
fsynced commit), then
forces a compaction while a 1 ms ticker task measures how late the event loop wakes it (the
stall). Prints a table and writes ``bench/results/store.json`` (``store.quick.json`` in quick mode).

Targets (issue 3): cost per mutation grows at most 1.5x from 1k to 1M records; compaction of
1M records stalls the event loop at most 10 ms at p99.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
import trio

from store import StoreConfig, open_store

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def results_path(quick: bool) -> Path:
    """Quick passes write beside the full results, so they never replace the cited ones."""
    return RESULTS_DIR / ("store.quick.json" if quick else "store.json")


WRITERS = 64
OPS = 30_000
ROUNDS = 3
TICK = 0.001


def _prefill(data_dir: Path, records: int) -> None:
    """Write a snapshot of ``records`` users directly (fast), in the store's own layout."""
    data_dir.mkdir(parents=True, exist_ok=True)
    stamp = "2026-01-01T00:00:00.000Z"
    with (data_dir / "threads-data.json").open("w") as f:
        f.write("{")
        sep = "\n"
        for i in range(records):
            user_id = f"57300{i:07d}"
            f.write(
                f'{sep}"{user_id}": {{"chatId":"{user_id}@s.whatsapp.net","userName":"User {i}",'
                f'"createdAt":"{stamp}","lastActivity":"{stamp}","conversationId":"conv_{i:024d}",'
                f'"labels":["Consulta"]}}'
            )
            sep = ",\n"
        f.write("\n}\n")
    (data_dir / "inbox.json").write_text(
        '{"format":1,"seq":0,"savedAt":"2026-01-01T00:00:00.000Z","pending":[],"done":[]}\n'
    )


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _ticker(lateness: list[float], stop: trio.Event) -> None:
    while not stop.is_set():
        before = time.perf_counter()
        await trio.sleep(TICK)
        lateness.append(max(0.0, time.perf_counter() - before - TICK))


async def _measure(size: int, base: Path) -> dict[str, Any]:
    data_dir = base / f"store-{size}"
    started = time.perf_counter()
    await trio.to_thread.run_sync(_prefill, data_dir, size)
    prefill = time.perf_counter() - started
    config = StoreConfig(
        data_dir=data_dir,
        journal_max_bytes=1 << 40,
        journal_max_age_seconds=1e9,
        maintenance_interval_seconds=1e9,
    )
    started = time.perf_counter()
    async with open_store(config) as store:
        load_seconds = time.perf_counter() - started
        assert len(store) == size
        users = [f"57300{i:07d}" for i in random.Random(size).sample(range(size), min(size, 1000))]
        template = store.get(users[0])
        assert template is not None
        latencies: list[float] = []
        round_seconds: list[float] = []
        commits_before = store.stats().commits
        for _ in range(ROUNDS):
            counter = iter(range(OPS))

            async def writer(counter: Any = counter) -> None:
                for n in counter:
                    user_id = users[n % len(users)]
                    record = attrs.evolve(template, user_id=user_id, name=f"n{n}")
                    t0 = time.perf_counter()
                    await store.put(record)
                    latencies.append(time.perf_counter() - t0)

            started = time.perf_counter()
            async with trio.open_nursery() as nursery:
                for _ in range(WRITERS):
                    nursery.start_soon(writer)
            round_seconds.append(time.perf_counter() - started)
        elapsed = statistics.median(round_seconds)
        commits = (store.stats().commits - commits_before) / ROUNDS

        # Compaction under a light write load, with the 1 ms ticker watching the loop.
        lateness: list[float] = []
        stop = trio.Event()
        during: list[float] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_ticker, lateness, stop)
            await trio.sleep(0.05)
            baseline = len(lateness)
            started = time.perf_counter()
            await store.compact()
            compaction = time.perf_counter() - started
            during = lateness[baseline:]
            stop.set()
        snapshot_bytes = store.stats().snapshot_bytes
    shutil.rmtree(data_dir, ignore_errors=True)
    return {
        "records": size,
        "prefill_seconds": round(prefill, 3),
        "load_seconds": round(load_seconds, 3),
        "ops": OPS,
        "rounds": ROUNDS,
        "writers": WRITERS,
        "ops_per_second": round(OPS / elapsed, 1),
        "microseconds_per_op": round(elapsed / OPS * 1e6, 2),
        "fsyncs_per_round": round(commits),
        "ops_per_fsync": round(OPS / max(commits, 1), 1),
        "commit_p50_ms": round(_percentile(latencies, 0.50) * 1e3, 3),
        "commit_p99_ms": round(_percentile(latencies, 0.99) * 1e3, 3),
        "compaction_seconds": round(compaction, 3),
        "snapshot_bytes": snapshot_bytes,
        "stall_samples": len(during),
        "stall_p50_ms": round(_percentile(during, 0.50) * 1e3, 3),
        "stall_p99_ms": round(_percentile(during, 0.99) * 1e3, 3),
        "stall_max_ms": round(max(during, default=0.0) * 1e3, 3),
        "stall_mean_ms": round(statistics.fmean(during) * 1e3, 3) if during else 0.0,
    }


async def run(quick: bool) -> dict[str, Any]:
    """Run the benchmark; returns (and writes) the results."""
    sizes = [1_000, 100_000] if quick else [1_000, 100_000, 1_000_000]
    base = Path(tempfile.mkdtemp(prefix="wabot-store-bench-"))
    try:
        rows = [await _measure(size, base) for size in sizes]
    finally:
        shutil.rmtree(base, ignore_errors=True)
    first, last = rows[0], rows[-1]
    ratio = last["microseconds_per_op"] / first["microseconds_per_op"]
    result = {
        "benchmark": "store",
        "quick": quick,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "nproc": os.cpu_count(),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
        },
        "rows": rows,
        "cost_ratio": {
            "from": first["records"],
            "to": last["records"],
            "ratio": round(ratio, 3),
            "target": 1.5,
            "met": ratio <= 1.5,
        },
        "compaction_stall": {
            "records": last["records"],
            "p99_ms": last["stall_p99_ms"],
            "target_ms": 10.0,
            "met": last["stall_p99_ms"] <= 10.0,
        },
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    results_path(quick).write_text(json.dumps(result, indent=2) + "\n")
    _print_table(result)
    return result


def _print_table(result: dict[str, Any]) -> None:
    columns = [
        ("records", "records"),
        ("load s", "load_seconds"),
        ("ops/s", "ops_per_second"),
        ("us/op", "microseconds_per_op"),
        ("ops/fsync", "ops_per_fsync"),
        ("p50 ms", "commit_p50_ms"),
        ("p99 ms", "commit_p99_ms"),
        ("compact s", "compaction_seconds"),
        ("stall p99 ms", "stall_p99_ms"),
        ("stall max ms", "stall_max_ms"),
    ]
    print(" | ".join(f"{title:>12}" for title, _ in columns))
    for row in result["rows"]:
        print(" | ".join(f"{row[key]!s:>12}" for _, key in columns))
    ratio = result["cost_ratio"]
    stall = result["compaction_stall"]
    print(
        f"cost per mutation {ratio['from']} -> {ratio['to']} records: x{ratio['ratio']} "
        f"(target <= 1.5: {'met' if ratio['met'] else 'MISSED'})"
    )
    print(
        f"compaction stall p99 at {stall['records']} records: {stall['p99_ms']} ms "
        f"(target <= 10 ms: {'met' if stall['met'] else 'MISSED'})"
    )
    if result["quick"]:
        print("quick mode: 1k and 100k records only (run without --quick for 1M)")
    print(f"results written to {results_path(result['quick'])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1k and 100k records only")
    args = parser.parse_args()
    trio.run(run, args.quick)


if __name__ == "__main__":
    main()
