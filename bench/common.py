"""Shared plumbing of the benchmarks: processes, RSS sampling, machine details, results.

The runner process only orchestrates. The subject (wabot via ``bench.botproc``, or the bare
baseline via ``bench.bare_app``) and the load (``bench.loadgen``, ``wrk``) are separate
processes that talk over loopback, so the load generator's CPU is never charged to the
subject and the subject's RSS is read from ``/proc/<pid>/status`` alone.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
PYTHON = sys.executable


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def write_result(name: str, result: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"benchmark": name, "machine": machine(), **result}, indent=2))
    tmp.replace(path)
    return path


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` (0 once it has exited)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return 0
    return 0


class RssSampler:
    """Samples a process's RSS every ``interval`` seconds in a thread (bounded count)."""

    def __init__(self, pid: int, interval: float = 0.2, max_samples: int = 20_000) -> None:
        self.pid = pid
        self.interval = interval
        self.max_samples = max_samples
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._t0 = time.monotonic()

    def _run(self) -> None:
        while not self._stop.is_set() and len(self.samples) < self.max_samples:
            value = rss_bytes(self.pid)
            if value:
                self.samples.append((time.monotonic() - self._t0, value))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def peak(self, since: float = 0.0) -> int:
        return max((v for t, v in self.samples if t >= since), default=0)

    def now(self) -> float:
        return time.monotonic() - self._t0


class Proc:
    """A child process with line-oriented stdout; stderr goes to a log file."""

    def __init__(
        self,
        args: list[str],
        *,
        env: Mapping[str, str] | None = None,
        log: Path,
        stdin: bool = False,
    ) -> None:
        self.log_path = log
        self._log = log.open("ab")
        self.popen = subprocess.Popen(
            args,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            bufsize=1,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def readline(self, timeout: float) -> str:
        """The next stdout line (raises TimeoutError; bounded wait)."""
        assert self.popen.stdout is not None
        box: list[str] = []
        reader = threading.Thread(target=lambda: box.append(self.popen.stdout.readline()))
        reader.daemon = True
        reader.start()
        reader.join(timeout)
        if not box:
            raise TimeoutError(f"{self.popen.args!r}: no output within {timeout}s")
        if not box[0]:
            raise RuntimeError(f"{self.popen.args!r} exited; see {self.log_path}")
        return box[0]

    def wait_ready(self, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            line = self.readline(max(0.1, deadline - time.monotonic()))
            if line.startswith("BENCH-READY "):
                return line.split()[1]

    def signal(self, signum: int = signal.SIGTERM) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signum)

    def wait(self, timeout: float) -> int | None:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, wait; SIGKILL if it does not exit in ``timeout``."""
        self.signal(signal.SIGTERM)
        code = self.wait(timeout)
        if code is None:
            self.popen.kill()
            code = self.wait(5)
        self._log.close()
        return code


class LoadGen(Proc):
    """``bench.loadgen``: the fakes + generators process, driven by JSON lines."""

    def __init__(self, log: Path) -> None:
        super().__init__([PYTHON, "-m", "bench.loadgen"], log=log, stdin=True)
        info = json.loads(self.readline(30))
        assert info["event"] == "fakes", info
        self.fakes = info

    def call(self, cmd: str, wait: float, **spec: Any) -> dict[str, Any]:
        assert self.popen.stdin is not None
        self.popen.stdin.write(json.dumps({"cmd": cmd, **spec}) + "\n")
        self.popen.stdin.flush()
        result = json.loads(self.readline(wait))
        if "error" in result:
            raise RuntimeError(f"loadgen {cmd} failed: {result['error']} (log {self.log_path})")
        return result

    def close(self) -> None:
        if self.popen.poll() is None and self.popen.stdin is not None:
            try:
                self.popen.stdin.write('{"cmd": "quit"}\n')
                self.popen.stdin.flush()
            except BrokenPipeError:
                pass
        self.stop(10)


def bot_env(fakes: Mapping[str, str], data_dir: Path, **settings: Any) -> dict[str, str]:
    """Environment of a wabot subject pointed at the loadgen's fakes (loopback only)."""
    env = {
        "WHAPI_TOKEN": fakes["whapi_token"],
        "OPENAI_API_KEY": fakes["openai_key"],
        "WHAPI_API_URL": fakes["whapi_url"],
        "OPENAI_BASE_URL": fakes["openai_url"],
        "HOST": "127.0.0.1",
        "PORT": "0",
        "WABOT_DATA_DIR": str(data_dir),
        "WABOT_TMP_DIR": str(data_dir.parent / "tmp-audio"),
        "WABOT_LOG_LEVEL": "INFO",
        "WABOT_TYPING_TIME_MIN": "0",
        "WABOT_TYPING_TIME_MAX": "0",
        "WABOT_PART_PAUSE_SECONDS": "0",
        # What ``make run`` and the README's production command set (gateway/tuning.py).
        "PYTHONMALLOC": "malloc",
    }
    env.update({f"WABOT_{k.upper()}": str(v) for k, v in settings.items()})
    return env


def start_bot(env: Mapping[str, str], log: Path, timeout: float = 120.0) -> tuple[Proc, str]:
    bot = Proc([PYTHON, "-m", "bench.botproc"], env=env, log=log)
    url = bot.wait_ready(timeout)
    return bot, url


def workdir(name: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"wabot-bench-{name}-"))


def cleanup(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def mib(value: float) -> float:
    return round(value / 2**20, 1)


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def print_table(title: str, header: list[str], rows: list[list[Any]]) -> None:
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(header)]
    print(f"\n{title}")
    print(" | ".join(str(h).rjust(w) for h, w in zip(header, widths, strict=True)))
    print("-+-".join("-" * w for w in widths))
    for row in rows:
        print(" | ".join(str(c).rjust(w) for c, w in zip(row, widths, strict=True)))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time consumed so far by ``pid`` (from /proc/<pid>/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_idle(loadgen: LoadGen, url: str, timeout: float) -> float:
    """Wait until no actor is live; the inbox's pending count then (raises on timeout)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        metrics = loadgen.call("metrics", 30, url=url)["metrics"]
        if metrics.get("wabot_live_actors", 1) == 0:
            return metrics.get("wabot_inbox_pending", 0)
        time.sleep(0.5)
    raise TimeoutError("actors did not idle out")


def user_data(loadgen: LoadGen, url: str) -> dict[str, Any]:
    """What the store and gateway hold for users (grows with user data, not with actors)."""
    metrics = loadgen.call("metrics", 30, url=url)["metrics"]
    return {
        name: metrics.get(f"wabot_{name}")
        for name in ("store_records", "dedupe_window_ids", "store_done_ids")
    }
