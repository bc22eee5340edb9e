"""``/metrics``: the numbers match what happened (parsed, not grepped), and the exposition is
one Prometheus accepts: ``promtool check metrics`` passes on a running bot's output, the
Content-Type names each parameter once, and OpenMetrics is served to a scraper that asks.

``promtool`` comes from Debian's ``prometheus`` package (``make test`` installs it when it
can); without it the promtool test skips, except under ``CI=true``, where it fails.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
import trio
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from sandbox import payloads
from tests.harness import Bot, make_settings, open_bot, open_fakes, wait_until
from tests.test_store_outage import FullDisk

USERS = ("573001111111", "573002222222", "573003333333")
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
#: What Prometheus 3 sends by default (it prefers OpenMetrics, then the text formats).
PROMETHEUS_3_ACCEPT = (
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,"
    "application/openmetrics-text;version=0.0.1;q=0.5,"
    "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,"
    "text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
)


def required_tool(name: str, package: str) -> str:
    """The path of command ``name``; skip without it, or fail under ``CI=true``."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (Debian package {package!r}; make test installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}: required in CI")
        pytest.skip(message)
    return path


@pytest.fixture
def promtool() -> str:
    return required_tool("promtool", "prometheus")


def content_type_params(header: str) -> tuple[str, list[str]]:
    """The media type and the parameter names of a Content-Type, in order."""
    media, *params = (part.strip() for part in header.split(";"))
    return media, [param.partition("=")[0].strip().lower() for param in params]


async def scrape(bot: Bot) -> Samples:
    response = await bot.http.get(f"{bot.url}/metrics")
    assert response.status_code == 200
    media, params = content_type_params(response.headers["content-type"])
    assert media == "text/plain" and sorted(params) == sorted(set(params))
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


async def test_metrics_reflect_a_scripted_run(tmp_path: Path) -> None:
    async with open_fakes() as fakes:
        fakes.whapi.echo = False  # count only the webhooks this script posts
        settings = make_settings(
            fakes, tmp_path, buffer_seconds=0.3, memory_soft_mb=8192.0, memory_hard_mb=16384.0
        )
        async with open_bot(fakes, settings) as bot:
            first, second, third = USERS
            # 4 messages from 3 users: the first user's two arrive in one webhook.
            two = payloads.webhook(
                [payloads.text_message(first, "hola"), payloads.text_message(first, "precio?")]
            )
            one = payloads.webhook([payloads.text_message(second, "buenas")])
            for body in (two, one, payloads.webhook([payloads.text_message(third, "hey")])):
                assert (await bot.post(body)).status_code == 200
            assert (await bot.post(one)).status_code == 200  # a redelivery
            assert (await bot.post(one, secret="wrong")).status_code == 401
            for user in USERS:
                await fakes.whapi.wait_sent(1, to=user)
            supervisor = bot.service.supervisor
            await wait_until(
                lambda: (
                    bot.service.store.stats().pending == 0
                    and all(cell.phase == "idle" for cell in supervisor.cells())
                ),
                timeout=5,
            )

            samples = await scrape(bot)
            sent = len(fakes.whapi.sent)
            expected = [
                ("wabot_webhooks_total", {"outcome": "accepted"}, 4),
                ("wabot_webhooks_total", {"outcome": "unauthorized"}, 1),
                ("wabot_duplicates_total", {}, 1),
                ("wabot_messages_total", {}, 4),
                ("wabot_turns_total", {"outcome": "replied"}, 3),
                ("wabot_sends_total", {"kind": "text", "result": "ok"}, sent),
                ("wabot_live_actors", {}, 3),
                ("wabot_actor_spawns_total", {}, 3),
                ("wabot_actor_restarts_total", {}, 0),
                ("wabot_store_commit_seconds_count", {}, 3),
                ("wabot_model_seconds_count", {}, 3),
                ("wabot_turn_seconds_count", {}, 3),
                ("wabot_inbox_pending", {}, 0),
                ("wabot_store_records", {}, 3),
                ("wabot_store_healthy", {}, 1),
                ("wabot_draining", {}, 0),
                ("wabot_memory_pressure", {}, 0),
            ]
            got = [(name, labels, value(samples, name, **labels)) for name, labels, _ in expected]
            assert got == expected
            assert value(samples, "wabot_actors_by_phase", phase="idle") == 3
            assert value(samples, "wabot_journal_bytes") > 0
            assert value(samples, "wabot_snapshot_bytes") > 0
            assert value(samples, "process_resident_memory_bytes") > 10 * 2**20
            assert value(samples, "process_cpu_seconds_total") > 0
            assert value(samples, "wabot_memory_hard_limit_bytes") == 16384 * 2**20
            assert value(samples, "wabot_store_outage_since_timestamp_seconds") == 0
            assert value(samples, "wabot_store_commits_total") >= 3
            # Every group commit's write + fsync, timed by the disk (store.disktime).
            syncs = value(samples, "wabot_store_journal_sync_seconds_count")
            assert syncs == value(samples, "wabot_store_commits_total")
            assert value(samples, "wabot_store_journal_sync_seconds_bucket", le="+Inf") == syncs
            assert value(samples, "wabot_store_journal_sync_seconds_sum") > 0
            sync_buckets = [
                (float(dict(labels)["le"]), count)
                for (name, labels), count in samples.items()
                if name == "wabot_store_journal_sync_seconds_bucket"
            ]
            counts = [count for _, count in sorted(sync_buckets)]
            assert counts == sorted(counts) and len(counts) > 5
            assert value(samples, "wabot_dedupe_window_ids") == 4
            assert value(samples, "wabot_mailbox_depth_max") == 0
            assert value(samples, "wabot_mailbox_messages") == 0
            builds = [labels for name, labels in samples if name == "wabot_build_info"]
            assert len(builds) == 1 and dict(builds[0])["version"]
            assert value(samples, "wabot_build_info", **dict(builds[0])) == 1
            assert sent >= 3


async def test_promtool_accepts_the_metrics_of_a_running_bot(tmp_path: Path, promtool: str) -> None:
    async with open_fakes() as fakes:
        settings = make_settings(fakes, tmp_path)
        async with open_bot(fakes, settings) as bot:
            user = USERS[0]
            hook = payloads.webhook([payloads.text_message(user, "hola")])
            assert (await bot.post(hook)).status_code == 200
            assert (await bot.post(hook, secret="wrong")).status_code == 401
            await fakes.whapi.wait_sent(1, to=user)
            scrapes = {
                accept: await bot.http.get(f"{bot.url}/metrics", headers={"Accept": accept})
                for accept in ("", "text/plain;version=1.0.0", "text/plain;version=0.0.4")
            }
            openmetrics = await bot.http.get(
                f"{bot.url}/metrics", headers={"Accept": PROMETHEUS_3_ACCEPT}
            )
    for accept, response in scrapes.items():
        media, params = content_type_params(response.headers["content-type"])
        assert media == "text/plain" and params.count("charset") == 1, accept
        result = await trio.run_process(
            [promtool, "check", "metrics"],
            stdin=response.content,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
        report = (result.stdout + result.stderr).decode()
        assert result.returncode == 0, f"Accept {accept!r}: promtool says\n{report}"
        assert "wabot_turns_total" in response.text and "process_open_fds" in response.text
    # Prometheus 3 asks for OpenMetrics first: it gets it, complete and strictly parseable.
    media, params = content_type_params(openmetrics.headers["content-type"])
    assert media == "application/openmetrics-text" and params.count("charset") == 1
    names = {family.name for family in openmetrics_families(openmetrics.text)}
    assert {"wabot_turns", "wabot_build_info", "process_resident_memory_bytes"} <= names


async def test_store_outage_gauge_is_when_writes_stopped_and_zero_once_healthy(
    tmp_path: Path,
) -> None:
    disk = FullDisk()
    async with open_fakes() as fakes:
        settings = make_settings(fakes, tmp_path, store_recovery_seconds=0.2)
        async with open_bot(fakes, settings, file_io=disk) as bot:
            assert value(await scrape(bot), "wabot_store_outage_since_timestamp_seconds") == 0
            before = time.time()
            disk.full = True
            hook = payloads.webhook([payloads.text_message(USERS[0], "hola")])
            assert (await bot.post(hook)).status_code in (200, 503)
            await wait_until(lambda: not bot.service.store.healthy, timeout=5)
            samples = await scrape(bot)
            since = value(samples, "wabot_store_outage_since_timestamp_seconds")
            assert since is not None and before <= since <= time.time()
            assert value(samples, "wabot_store_healthy") == 0
            disk.full = False
            await wait_until(lambda: bot.service.store.healthy, timeout=10)
            samples = await scrape(bot)
            assert value(samples, "wabot_store_outage_since_timestamp_seconds") == 0
            assert value(samples, "wabot_store_healthy") == 1
