"""``/metrics`` after a scripted run: the numbers match what happened (parsed, not grepped)."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from sandbox import payloads
from tests.harness import Bot, make_settings, open_bot, open_fakes, wait_until

USERS = ("573001111111", "573002222222", "573003333333")
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(bot: Bot) -> Samples:
    response = await bot.http.get(f"{bot.url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
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
        settings = make_settings(fakes, tmp_path, buffer_seconds=0.3)
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
            assert value(samples, "wabot_rss_bytes") > 10 * 2**20
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
            assert sent >= 3
