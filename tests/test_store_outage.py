"""A storage outage delays answers, it never replaces them with an apology or drops them.

The data directory's disk stops taking writes (ENOSPC on every write and fsync, through the
store's file layer) just after a customer's message was acknowledged. The turn waits for
the store, showing "typing"; when the disk takes writes again the customer gets the real
answer, once, and the message is settled. An outage longer than the turn's deadline puts the
turn off (the message stays pending) and a later attempt answers it. While the store is down
webhooks get 503, ``/readyz`` 503, ``/healthz`` 200, and ``/health`` names the outage.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from sandbox import payloads
from store.fileio import FileIO
from tests.harness import make_settings, open_bot, open_fakes, wait_until

USER = "573006600001"
CHAT = f"{USER}@s.whatsapp.net"


class FullDisk(FileIO):
    """Every write and fsync fails with ENOSPC while ``full`` is set."""

    def __init__(self) -> None:
        self.full = False

    def write(self, fd: int, data: bytes | memoryview) -> int:
        if self.full:
            raise OSError(errno.ENOSPC, "injected: no space left on device")
        return super().write(fd, data)

    def fsync(self, fd: int) -> None:
        if self.full:
            raise OSError(errno.ENOSPC, "injected: no space left on device")
        super().fsync(fd)


async def test_a_short_outage_delays_the_answer_and_shows_typing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    disk = FullDisk()
    async with open_fakes() as fakes:
        settings = make_settings(
            fakes, tmp_path, store_recovery_seconds=0.2, typing_refresh_seconds=0.2
        )
        async with open_bot(fakes, settings, file_io=disk) as bot:
            acked = await bot.post(payloads.webhook([payloads.text_message(USER, "hola")]))
            assert acked.status_code == 200
            disk.full = True  # before the turn's first write (the buffer is 0.15 s)
            await wait_until(lambda: not bot.service.store.healthy, timeout=5)
            during = await bot.post(payloads.webhook([payloads.text_message(USER, "otra")]))
            assert during.status_code == 503
            assert (await bot.http.get(f"{bot.url}/readyz")).status_code == 503
            assert (await bot.http.get(f"{bot.url}/healthz")).status_code == 200
            health = (await bot.http.get(f"{bot.url}/health")).json()
            assert health["store"]["outageSince"]
            await trio.sleep(1.0)
            assert not fakes.whapi.sent_to(CHAT), "nothing is sent while the store is down"
            typing = [e for e, presence in fakes.whapi.presences_put if presence == "typing"]
            assert any(USER in entry for entry in typing), "the customer sees typing"
            disk.full = False
            await fakes.whapi.wait_sent(1, to=CHAT, timeout=10)
            await wait_until(lambda: bot.service.store.stats().pending == 0, timeout=10)
            assert [m.body for m in fakes.whapi.sent_to(CHAT)] == ["Recibido: hola"]
            assert (await bot.http.get(f"{bot.url}/health")).json()["store"]["outageSince"] is None
        assert any("store outage ended" in r.getMessage() for r in caplog.records)


async def test_an_outage_past_the_turn_deadline_keeps_the_message_for_later(
    tmp_path: Path,
) -> None:
    disk = FullDisk()
    async with open_fakes() as fakes:
        settings = make_settings(
            fakes,
            tmp_path,
            store_recovery_seconds=0.2,
            turn_timeout_seconds=0.6,
            retry_max_seconds=0.2,
        )
        async with open_bot(fakes, settings, file_io=disk) as bot:
            acked = await bot.post(payloads.webhook([payloads.text_message(USER, "hola")]))
            assert acked.status_code == 200
            disk.full = True
            await trio.sleep(2.0)  # several turn deadlines
            assert bot.service.store.stats().pending == 1
            assert not fakes.whapi.sent_to(CHAT), "no apology for our own storage"
            disk.full = False
            await fakes.whapi.wait_sent(1, to=CHAT, timeout=10)
            await wait_until(lambda: bot.service.store.stats().pending == 0, timeout=10)
            await trio.sleep(0.5)
            assert [m.body for m in fakes.whapi.sent_to(CHAT)] == ["Recibido: hola"]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs mounted for the test (needs root); skipped where it cannot be mounted,
    the ``FullDisk`` tests above cover the same path through the file layer."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        reason = f"cannot mount a tmpfs here: {done.stderr.decode().strip() or done.returncode}"
        if os.environ.get("CI") == "true" and os.geteuid() == 0:
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Write a filler file until the disk has no byte left; returns it (delete to free)."""
    filler = disk / "filler.bin"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        for size in (65536, 512, 1):  # the last bytes, a smaller write at a time
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


async def test_a_real_full_disk_delays_every_answer_and_loses_none(small_disk: Path) -> None:
    users = [f"5730066{n:05d}" for n in range(6)]
    async with open_fakes() as fakes:
        settings = make_settings(
            fakes,
            small_disk / "data",
            tmp_dir=small_disk.parent / "tmp-audio",
            buffer_seconds=0.6,
            store_recovery_seconds=0.2,
            turn_timeout_seconds=2.0,
            retry_max_seconds=0.2,
        )
        async with open_bot(fakes, settings, file_io=FileIO()) as bot:
            expected: dict[str, list[str]] = {user: [] for user in users}

            async def send(user: str, text: str) -> bool:
                body = payloads.webhook([payloads.text_message(user, text)])
                if (await bot.post(body)).status_code != 200:
                    return False
                expected[user].append(text)
                return True

            for user in users:  # acknowledged before: still in their buffers at the fill
                assert await send(user, f"antes {user}")
            filler = fill(small_disk)
            refused = 0
            for user in users:  # during: refused (Whapi retries) or, if taken, answered
                if not await send(user, f"durante {user}"):
                    refused += 1
            await trio.sleep(3.0)  # past a turn deadline with the disk still full
            assert not bot.service.store.healthy
            assert refused, "a full disk refuses webhooks it cannot journal"
            assert not any(fakes.whapi.sent_to(f"{u}@s.whatsapp.net") for u in users)
            filler.unlink()
            await wait_until(lambda: bot.service.store.healthy, timeout=10)
            for user in users:  # after
                assert await send(user, f"después {user}")
            await wait_until(lambda: bot.service.store.stats().pending == 0, timeout=20)
            await trio.sleep(0.5)
            for user in users:
                bodies = [m.body or "" for m in fakes.whapi.sent_to(f"{user}@s.whatsapp.net")]
                answered = [text for text in expected[user] if any(text in b for b in bodies)]
                assert answered == expected[user], (user, bodies)
                assert not any("problema" in b.lower() for b in bodies), bodies  # no apology
                for text in expected[user]:  # each answered once
                    assert sum(text in b for b in bodies) == 1, (user, text, bodies)
