"""A writer process for the crash tests: heavy ``put`` and inbox traffic until killed.

Usage: ``python writer.py DATA_DIR ACK_FILE BASE_VERSION``. Every operation is appended to
ACK_FILE (flushed) only after its ``await`` returned, i.e. once the store acknowledged it:
``put USER VERSION``, ``add MESSAGE_ID``, ``done MESSAGE_ID``. Versions start at BASE_VERSION
and only grow, so the test can check each user's stored version is at least the acknowledged
one. A tiny ``journal_max_bytes`` makes compactions (and kills during them) frequent.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import attrs
import trio

from store import InboxEntry, StoreConfig, UserRecord, open_store
from store.records import utcnow

USERS = 200
WORKERS = 8


async def main(data_dir: Path, ack_path: Path, base: int) -> None:
    config = StoreConfig(
        data_dir=data_dir, journal_max_bytes=16 * 1024, maintenance_interval_seconds=0.05
    )
    counter = [base]
    rng = random.Random(base)
    with ack_path.open("a", buffering=1) as acks:
        async with open_store(config) as store:
            acks.write("ready\n")

            async def worker(index: int) -> None:
                # Each user has one writer (as in wabot: its user actor), so versions grow.
                while True:
                    counter[0] += 1
                    version = counter[0]
                    user_id = f"u{rng.randrange(USERS // WORKERS) * WORKERS + index}"
                    record = attrs.evolve(
                        UserRecord.new(user_id, f"{user_id}@s.whatsapp.net", "crash"),
                        name=f"v{version}",
                        labels=("x" * rng.randrange(50),),
                    )
                    await store.put(record)
                    acks.write(f"put {user_id} {version}\n")
                    message_id = f"m{version}"
                    entry = InboxEntry(message_id, user_id, utcnow(), {"id": message_id})
                    await store.inbox_add([entry])
                    acks.write(f"add {message_id}\n")
                    if version % 3:
                        await store.inbox_done([message_id], "replied")
                        acks.write(f"done {message_id}\n")

            async with trio.open_nursery() as nursery:
                for index in range(WORKERS):
                    nursery.start_soon(worker, index)


if __name__ == "__main__":
    trio.run(main, Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]))
