"""The open-files limit at start: raised for the pools when it can be, said loudly when not.

Each case runs in a child process whose limits are set first, so this test process keeps its
own.
"""

from __future__ import annotations

import subprocess
import sys

from actors.settings import Settings

CHILD = """
import logging, resource, sys
logging.basicConfig(level=logging.WARNING, format="%(message)s")
resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[1]), int(sys.argv[2])))
from gateway.limits import raise_open_files
print(raise_open_files(int(sys.argv[3])))
"""


def _child(soft: int, hard: int, pools: int) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(soft), str(hard), str(pools)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return int(done.stdout.strip()), done.stderr


def test_a_low_soft_limit_is_raised_to_what_the_pools_need() -> None:
    soft, warnings = _child(256, 4096, 2000)
    assert soft == 2000 + 512
    assert warnings == ""


def test_a_hard_limit_short_of_the_pools_is_used_and_said() -> None:
    soft, warnings = _child(256, 1024, 2000)
    assert soft == 1024
    assert "the open-files limit is 1024, the connection pools may need 2512" in warnings
    assert "WABOT_MAX_CONCURRENT_TURNS" in warnings


def test_the_turns_bound_is_derived_from_the_memory_limit_unless_set() -> None:
    assert Settings().turns_in_flight == 2621  # a quarter of 1024 MB at 100 KiB a turn
    assert Settings(memory_soft_mb=4096).turns_in_flight == 10485
    assert Settings(max_concurrent_turns=50).turns_in_flight == 50
    assert Settings().pool_size == 2621
    assert Settings(http_pool_size=64).pool_size == 64
