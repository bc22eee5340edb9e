"""The open-files limit, raised to what the turns in flight need.

Every turn waiting on the model holds a connection of the OpenAI client's pool, and its sends a
connection of the Whapi client's; with thousands of turns in flight that is thousands of
sockets, past the soft ``RLIMIT_NOFILE`` many systems start a process with (1024), where the
next ``connect`` fails with ``EMFILE``. At start the soft limit is raised as far as the hard
limit allows (an unprivileged process may do that); if even the hard limit is short of what
the pools may open, the start says so, with the two settings that size them.
"""

from __future__ import annotations

import logging
import resource

log = logging.getLogger("gateway.limits")

#: Descriptors beyond the pools: webhooks being read, the store's files, logs, the sandbox.
SPARE_FILES = 512


def raise_open_files(pools: int) -> int:
    """Raise the soft open-files limit toward ``pools`` + spare; the soft limit after it."""
    needed = pools + SPARE_FILES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = needed if hard == resource.RLIM_INFINITY else min(max(soft, needed), hard)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-files limit from %d: %s", soft, exc)
    if soft < needed:
        log.warning(
            "the open-files limit is %d, the connection pools may need %d: lower "
            "WABOT_MAX_CONCURRENT_TURNS or WABOT_HTTP_POOL_SIZE, or raise the limit "
            "(ulimit -n, LimitNOFILE= in a systemd unit, --ulimit in docker)",
            soft,
            needed,
        )
    return soft
