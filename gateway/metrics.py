"""``GET /metrics``: the service's state in Prometheus format, read at scrape time.

Counters that live on their owners (gateway, supervisor, store, watchdog) are collected when
Prometheus scrapes, so the hot paths do no metric work for them; latencies and outcomes that
must be observed as they happen come from ``actors.runtime.telemetry`` (turns, model latency, sends,
tool calls, and the durable inbox's commit latency, observed by the service). Per-actor
figures (phases, mailbox depth) are a walk over the live actors at scrape time; the sizes of
the bounded shared structures (registry, dedupe window, chat-info cache) are exported too. The
``wabot_channel_*`` families carry a ``channel`` label, one value per configured channel
(``actors.channels``): webhooks by outcome, new messages and live actors.

The exposition is prometheus_client's own: ``render`` picks the format (Prometheus text or
OpenMetrics) from the scraper's ``Accept`` header and returns the matching Content-Type, so
what ``promtool check metrics`` and Prometheus 3 read is what the library writes. The
process's memory, CPU and file descriptors are prometheus_client's ``process_*`` metrics
(``ProcessCollector``), the interpreter is ``python_info`` (``PlatformCollector``), and
``wabot_build_info`` names the installed wabot version. Names follow Prometheus' rules:
counters end in ``_total`` (added by the library), gauges never do, timestamps are
``*_timestamp_seconds``.
"""

from __future__ import annotations

import platform
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from actors.channels import split_key

if TYPE_CHECKING:
    from gateway.service import Service


def _wabot_version() -> str:
    try:
        return version("wabot")
    except PackageNotFoundError:
        return "unknown"


#: The installed distribution's version (``wabot_build_info``).
VERSION = _wabot_version()


def register_collectors(registry: CollectorRegistry, service: Service) -> None:
    """Add the service's scrape-time metrics and the process and platform collectors."""
    registry.register(ServiceCollector(service))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)


def render(registry: CollectorRegistry, accept: str | None) -> tuple[bytes, str]:
    """The exposition of ``registry`` in the format ``accept`` asks for, and its Content-Type."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type


def build_info() -> GaugeMetricFamily:
    info = GaugeMetricFamily(
        "wabot_build_info",
        "Always 1: the running wabot version and Python version",
        labels=["version", "python"],
    )
    info.add_metric([VERSION, platform.python_version()], 1)
    return info


class ServiceCollector(Collector):
    """The figures of the gateway, supervisor, store, watchdog and GC pacer, read per scrape."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        service = self.service
        gateway, supervisor, store = service.gateway, service.supervisor, service.store

        webhooks = CounterMetricFamily("wabot_webhooks", "Webhooks by outcome", labels=["outcome"])
        for outcome, count in (gateway.counters.webhooks if gateway else {}).items():
            webhooks.add_metric([outcome], count)
        for outcome, count in service.http_rejections.items():
            webhooks.add_metric([outcome], count)
        yield webhooks
        if gateway is not None:
            yield CounterMetricFamily(
                "wabot_duplicates",
                "Duplicate deliveries recognised",
                value=gateway.counters.duplicates,
            )
            yield CounterMetricFamily(
                "wabot_messages", "New customer messages journaled", value=gateway.counters.messages
            )
            ignored = CounterMetricFamily(
                "wabot_ignored", "Webhook entries not for the bot, by rule", labels=["reason"]
            )
            for reason, count in gateway.counters.ignored.items():
                ignored.add_metric([reason], count)
            yield ignored
            yield GaugeMetricFamily(
                "wabot_dedupe_window_ids",
                "Ids in the gateway's dedupe window",
                value=len(gateway.window),
            )
            by_channel = CounterMetricFamily(
                "wabot_channel_webhooks",
                "Webhooks of each channel by outcome (channel_mismatch: refused, 400)",
                labels=["channel", "outcome"],
            )
            for (channel, outcome), count in gateway.channel_webhooks.items():
                by_channel.add_metric([channel, outcome], count)
            yield by_channel
            messages = CounterMetricFamily(
                "wabot_channel_messages",
                "New customer messages journaled, by channel",
                labels=["channel"],
            )
            for channel, count in gateway.channel_messages.items():
                messages.add_metric([channel], count)
            yield messages

        if supervisor is not None:
            counters = supervisor.counters
            for name, value, text in (
                ("wabot_actor_spawns", counters.spawns, "Actor activations"),
                ("wabot_actor_idle_stops", counters.idle_stops, "Actors stopped after idling"),
                ("wabot_actor_passivations", counters.passivations, "Idle actors passivated early"),
                ("wabot_actor_restarts", counters.restarts, "Actor restarts after a crash"),
                ("wabot_actor_give_ups", counters.give_ups, "Actors parked after a crash loop"),
            ):
                yield CounterMetricFamily(name, text, value=value)
            cells = supervisor.cells()
            yield GaugeMetricFamily("wabot_live_actors", "Live user actors", value=len(cells))
            phases = GaugeMetricFamily(
                "wabot_actors_by_phase", "Live actors by phase", labels=["phase"]
            )
            counts: dict[str, int] = {}
            depth_total = depth_max = 0
            channels: dict[str, int] = dict.fromkeys(service.channels, 0)
            for cell in cells:
                counts[cell.phase] = counts.get(cell.phase, 0) + 1
                channel = split_key(cell.key)[0]
                if channel in channels:
                    channels[channel] += 1
                depth = cell.mailbox_depth
                depth_total += depth
                depth_max = max(depth_max, depth)
            for phase, count in counts.items():
                phases.add_metric([phase], count)
            yield phases
            live = GaugeMetricFamily(
                "wabot_channel_live_actors", "Live user actors by channel", labels=["channel"]
            )
            for channel, count in channels.items():
                live.add_metric([channel], count)
            yield live
            yield GaugeMetricFamily("wabot_mailbox_depth_max", "Deepest mailbox", value=depth_max)
            yield GaugeMetricFamily(
                "wabot_mailbox_messages", "Messages in all mailboxes", value=depth_total
            )

        if store is not None:
            stats = store.stats()
            yield GaugeMetricFamily("wabot_store_records", "User records", value=stats.records)
            yield GaugeMetricFamily(
                "wabot_inbox_pending", "Messages journaled, not yet answered", value=stats.pending
            )
            yield GaugeMetricFamily(
                "wabot_store_done_ids",
                "Answered message ids remembered for deduplication",
                value=stats.done_ids,
            )
            yield GaugeMetricFamily(
                "wabot_journal_bytes", "Size of the journal", value=stats.journal_bytes
            )
            yield GaugeMetricFamily(
                "wabot_snapshot_bytes", "Size of the snapshot", value=stats.snapshot_bytes
            )
            yield GaugeMetricFamily(
                "wabot_store_healthy", "1 if the store can write", value=int(stats.healthy)
            )
            yield GaugeMetricFamily(
                "wabot_store_outage_since_timestamp_seconds",
                "When (Unix time) the store stopped taking writes; 0 while it takes them",
                value=stats.outage_since or 0.0,
            )
            yield CounterMetricFamily(
                "wabot_store_commits", "Group commits (fsyncs)", value=stats.commits
            )
            yield CounterMetricFamily(
                "wabot_store_compactions",
                "Snapshots written by compaction",
                value=stats.compactions,
            )
            yield GaugeMetricFamily(
                "wabot_store_last_commit_seconds",
                "Duration of the latest group commit (write + fsync)",
                value=stats.last_commit_seconds,
            )
            syncs = stats.journal_syncs
            yield HistogramMetricFamily(
                "wabot_store_journal_sync_seconds",
                "Time the disk took to write and fsync a journal batch (timed in its thread)",
                buckets=[(repr(bound), count) for bound, count in syncs.buckets]
                + [("+Inf", syncs.count)],
                sum_value=syncs.total_seconds,
            )

        deps = service.deps
        chat_info = getattr(deps, "chat_info", None)
        if chat_info is not None:
            yield GaugeMetricFamily(
                "wabot_chat_info_cache_entries",
                "Chats in the chat-info cache",
                value=len(chat_info),
            )

        yield build_info()
        watchdog = service.watchdog
        yield GaugeMetricFamily(
            "wabot_memory_soft_limit_bytes",
            "Resident set size over which idle actors are passivated (WABOT_MEMORY_SOFT_MB)",
            value=watchdog.soft_bytes,
        )
        yield GaugeMetricFamily(
            "wabot_memory_hard_limit_bytes",
            "Resident set size over which every idle actor is passivated (WABOT_MEMORY_HARD_MB)",
            value=watchdog.hard_bytes,
        )
        yield CounterMetricFamily(
            "wabot_memory_pressure_events",
            "Times RSS went over the soft limit",
            value=watchdog.pressure_events,
        )
        yield CounterMetricFamily(
            "wabot_memory_passivations",
            "Actors passivated by the memory watchdog",
            value=watchdog.passivated,
        )
        yield CounterMetricFamily(
            "wabot_memory_trims",
            "Times freed memory was given back to the OS",
            value=service.trimmer.trims,
        )
        yield GaugeMetricFamily(
            "wabot_memory_pressure",
            "0 under the soft memory limit, 1 over it, 2 over the hard limit",
            value=watchdog.level,
        )
        pacer = service.gc_pacer
        yield CounterMetricFamily(
            "wabot_gc_full_collections",
            "Full garbage collections (their pause grows with the live actors)",
            value=pacer.collections,
        )
        yield CounterMetricFamily(
            "wabot_gc_full_pause_seconds",
            "Time spent in full garbage collections",
            value=pacer.seconds_total,
        )
        yield GaugeMetricFamily(
            "wabot_gc_full_pause_max_seconds",
            "Longest full garbage collection so far",
            value=pacer.seconds_max,
        )
        yield GaugeMetricFamily("wabot_draining", "1 while draining", value=int(service.draining))
