"""Speech benchmark: what one Realtime voice reply costs wabot, and its memory at 32 at once.

The fake OpenAI (``python -m sandbox``, its own process, zero latency) plays the Realtime
API; a measuring process of its own (``python -m bench.speech --measure``, on the C allocator
as ``wabot serve`` runs) drives the real ``RealtimeSynthesizer`` against it, so neither the
fake's CPU nor the runner's is charged to the subject:

1. a 20-word and a 60-word Spanish reply, each synthesized ``rounds`` times one after the
   other (after 3 warm-up runs): wall time and CPU (the process's CPU time, the encoding
   thread's included) per synthesis, and of that the encoding alone
   (``encode_voice_note`` on the same PCM, timed in the thread that runs it);
2. 32 syntheses of the 60-word reply at once (``WABOT_SPEECH_MAX_SOCKETS=32``), after one
   warm-up round of 32: the peak RSS (sampled every 5 ms from ``/proc/self/statm``) over the
   RSS just before (collected and ``malloc_trim``-med, as wabot's watchdog trims), per
   synthesis, the median of 3 rounds; and the peak of the Python heap per synthesis
   (``tracemalloc``, in a round of its own since tracing slows everything down).

Audio: the fake's tone is 0.06 s per character (a 60-word reply ≈ 22 s of speech), in
deltas of 0.1 s; the result goes to ``bench/results/speech.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import os
import statistics
import sys
import threading
import time
import tracemalloc
from typing import Any

import trio

from bench.common import PYTHON, ROOT, Proc, cleanup, print_table, workdir, write_result

WORDS_20 = (
    "Hola Ana, claro que sí: tenemos habitaciones libres ese fin de semana y el desayuno "
    "va incluido. ¿Quieres que te la reserve?"
)
WORDS_60 = (
    "Hola Ana, gracias por escribirnos. Claro que sí, tenemos habitaciones libres ese fin de "
    "semana, con vista al mar y desayuno incluido. La entrada es a partir de las tres de la "
    "tarde y la salida hasta el mediodía. Si quieres, te la reservo ahora mismo a tu nombre; "
    "solo necesito que me confirmes cuántas personas vienen y si traen mascota. ¿Te parece bien?"
)
CONCURRENT = 32
WARMUP = 3
BURSTS = 3


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _Peak:
    """The peak RSS of this process, sampled every 5 ms in a thread."""

    def __init__(self) -> None:
        self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss())

    def __enter__(self) -> _Peak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())


def _trim() -> None:
    """Collect, and give the C heap's free memory back (as wabot's watchdog does)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _cpu() -> float:
    """This process's CPU time, every thread's (``CLOCK_PROCESS_CPUTIME_ID``)."""
    return time.process_time()


async def _measure(url: str, key: str, rounds: int) -> dict[str, Any]:
    from actors.voice.realtime import PCM_RATE, RealtimeSynthesizer
    from actors.voice.voicenote import encode_voice_note
    from sandbox.realtime import tone

    speaker = RealtimeSynthesizer(
        api_key=key,
        base_url=url,
        model="gpt-realtime-2.1-mini",
        voice="marin",
        max_sockets=CONCURRENT,
        timeout=120.0,
    )
    out: dict[str, Any] = {"rows": []}
    for label, text in (("20 words", WORDS_20), ("60 words", WORDS_60)):
        for _ in range(WARMUP):
            await speaker.synthesize(text)
        walls: list[float] = []
        cpus: list[float] = []
        size = 0
        for _ in range(rounds):
            wall0, cpu0 = time.perf_counter(), _cpu()
            ogg = await speaker.synthesize(text)
            walls.append(time.perf_counter() - wall0)
            cpus.append(_cpu() - cpu0)
            size = len(ogg)
        pcm = tone(text, seconds_per_char=0.06)

        def encode(pcm: bytes = pcm) -> float:
            start = time.thread_time()
            encode_voice_note(pcm, rate=PCM_RATE, max_seconds=600, max_bytes=2**24)
            return time.thread_time() - start

        encodes = [await trio.to_thread.run_sync(encode) for _ in range(rounds)]
        out["rows"].append(
            {
                "reply": label,
                "words": len(text.split()),
                "chars": len(text),
                "audio_seconds": round(len(pcm) / 2 / PCM_RATE, 1),
                "ogg_bytes": size,
                "wall_ms_p50": round(statistics.median(walls) * 1000, 1),
                "wall_ms_max": round(max(walls) * 1000, 1),
                "cpu_ms_p50": round(statistics.median(cpus) * 1000, 1),
                "cpu_ms_mean": round(statistics.fmean(cpus) * 1000, 1),
                "encode_cpu_ms_p50": round(statistics.median(encodes) * 1000, 1),
                "rounds": rounds,
            }
        )

    async def burst() -> float:
        started = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(CONCURRENT):
                nursery.start_soon(speaker.synthesize, WORDS_60)
        return time.perf_counter() - started

    await burst()  # warm-up: the allocator's arenas, 32 sockets' buffers
    samples = []
    for _ in range(BURSTS):
        _trim()
        before = _rss()
        with _Peak() as peak:
            seconds = await burst()
        samples.append((peak.peak - before, before, peak.peak, _rss(), seconds))
    samples.sort()
    growth, before, peak_rss, after, seconds = samples[len(samples) // 2]
    tracemalloc.start()
    await burst()
    _current, heap_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    out["concurrent"] = {
        "syntheses": CONCURRENT,
        "reply": "60 words",
        "bursts": BURSTS,
        "rss_before_mib": round(before / 2**20, 1),
        "rss_peak_mib": round(peak_rss / 2**20, 1),
        "rss_after_mib": round(after / 2**20, 1),
        "rss_per_synthesis_kib": round(growth / CONCURRENT / 1024),
        "rss_per_synthesis_kib_all": [round(g[0] / CONCURRENT / 1024) for g in samples],
        "python_heap_peak_per_synthesis_kib": round(heap_peak / CONCURRENT / 1024),
        "burst_seconds": round(seconds, 2),
    }
    return out


def run(quick: bool) -> dict[str, Any]:
    rounds = 10 if quick else 30
    base = workdir("speech")
    fake = Proc([PYTHON, "-m", "sandbox"], log=base / "fake.log")
    try:
        fakes = json.loads(fake.readline(30))
        child = Proc(
            [
                PYTHON,
                "-m",
                "bench.speech",
                "--measure",
                fakes["openai_url"],
                fakes["openai_key"],
                str(rounds),
            ],
            env={"PYTHONMALLOC": "malloc"},
            log=base / "measure.log",
        )
        try:
            result = json.loads(child.readline(900))
        finally:
            child.stop(10)
    finally:
        fake.stop(10)
        cleanup(base)
    result["quick"] = quick
    header = ["reply", "audio s", "OGG bytes", "wall p50 ms", "wall max ms", "CPU p50 ms"]
    header += ["encode CPU ms", "rounds"]
    keys = ["reply", "audio_seconds", "ogg_bytes", "wall_ms_p50", "wall_ms_max", "cpu_ms_p50"]
    keys += ["encode_cpu_ms_p50", "rounds"]
    print_table(
        "Realtime synthesis against the fake at zero latency (per voice reply)",
        header,
        [[row[key] for key in keys] for row in result["rows"]],
    )
    c = result["concurrent"]
    print(
        f"\n{c['syntheses']} syntheses of the {c['reply']} reply at once: {c['burst_seconds']} s; "
        f"RSS {c['rss_before_mib']} -> peak {c['rss_peak_mib']} MiB "
        f"({c['rss_per_synthesis_kib']} KiB per synthesis, median of "
        f"{c['rss_per_synthesis_kib_all']}), after {c['rss_after_mib']} MiB; "
        f"Python heap peak {c['python_heap_peak_per_synthesis_kib']} KiB per synthesis"
    )
    path = write_result("speech", result)
    print(f"results written to {path.relative_to(ROOT)}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.speech", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--measure", nargs=3, metavar=("URL", "KEY", "ROUNDS"))
    args = parser.parse_args(argv)
    if args.measure:
        url, key, rounds = args.measure
        result = trio.run(_measure, url, key, int(rounds))
        print(json.dumps(result), flush=True)
        return 0
    run(args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
