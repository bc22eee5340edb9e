"""Metrics the actors observe while they work, on the service's own Prometheus registry.

Counters that already live on their owners (gateway, supervisor, store) are read at scrape
time by ``gateway.metrics``; this module holds what must be observed as it happens: turn
outcomes and latencies, supersedes, model latency, sends, tool calls, speech latency and the
voice replies that fell back to text. One ``Telemetry`` per service (no global default
registry), so two services in one test process never mix their numbers.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Telemetry:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.turns = Counter("wabot_turns", "Model turns by outcome", ["outcome"], registry=r)
        self.turn_seconds = Histogram(
            "wabot_turn_seconds",
            "From the start of a turn to its last send",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.model_seconds = Histogram(
            "wabot_model_seconds",
            "Latency of one model call (retries included)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.sends = Counter(
            "wabot_sends", "Messages sent to WhatsApp", ["kind", "result"], registry=r
        )
        self.tool_calls = Counter(
            "wabot_tool_calls", "Tool calls made by the model", ["tool", "result"], registry=r
        )
        self.store_commit_seconds = Histogram(
            "wabot_store_commit_seconds",
            "Time for the durable inbox to journal a webhook's messages (group commit)",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
            registry=r,
        )
        self.settled = Counter(
            "wabot_messages_settled",
            "Customer messages settled by their turn: answered, or failed (fallback sent or not)",
            ["outcome"],
            registry=r,
        )
        self.conversations_lost = Counter(
            "wabot_conversations_lost",
            "Stored conversations OpenAI no longer knew, replaced by a fresh one",
            registry=r,
        )
        self.supersedes = Counter(
            "wabot_supersedes",
            "Turns that gave way to the customer's later messages, one turn answering them all "
            "(done), or could not take their answer back from the conversation and sent it (kept)",
            ["result"],
            registry=r,
        )
        self.flood_dropped = Counter(
            "wabot_flood_dropped", "Messages dropped under the flood rule", registry=r
        )
        self.voice_fallbacks = Counter(
            "wabot_voice_fallbacks",
            "Voice replies sent as text instead because synthesis failed, by reason",
            ["reason"],
            registry=r,
        )
        self.budget_wait_seconds = Histogram(
            "wabot_model_budget_wait_seconds",
            "Time a model call waited for the OpenAI rate-limit budget",
            buckets=(0, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=r,
        )
        #: Read from the budget at scrape time (``actors.wiring`` sets their functions).
        self.budget_waiting = Gauge(
            "wabot_model_budget_waiting",
            "Model calls waiting for the OpenAI rate-limit budget",
            registry=r,
        )
        self.budget_oldest_wait = Gauge(
            "wabot_model_budget_oldest_wait_seconds",
            "How long the longest-waiting model call has waited for the budget",
            registry=r,
        )
        self.pool_wait_seconds = Histogram(
            "wabot_http_pool_wait_seconds",
            "Time a request to an upstream waited for a connection of its client's pool",
            ["upstream"],
            buckets=(0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        #: Read from the turn slots at scrape time (``actors.wiring`` sets its function).
        self.turns_in_flight = Gauge(
            "wabot_turns_in_flight",
            "Turns running (holding one of WABOT_MAX_CONCURRENT_TURNS), network waits included",
            registry=r,
        )
        self.turns_waiting = Gauge(
            "wabot_turns_waiting_for_slot",
            "Turns due but waiting for a free slot of WABOT_MAX_CONCURRENT_TURNS",
            registry=r,
        )
        self.speech_seconds = Histogram(
            "wabot_speech_seconds",
            "Time to synthesize one voice reply (Realtime API and encoding)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
