"""The realistic-latency benchmarks' pure parts: schedules, the model's share of a wait, knee."""

from __future__ import annotations

from collections import Counter

import pytest

from bench.campaign_load import (
    ModelCall,
    campaign_schedule,
    model_overlap,
    ramp_rate,
    ramp_schedule,
    seconds_summary,
    steady_schedule,
)
from bench.capacity import knee
from bench.realistic import cores_peak


def test_a_campaign_brings_each_customer_one_to_three_messages_within_the_window() -> None:
    spec = {"customers": 2000, "window": 60.0, "mean_arrival": 20.0, "seed": 3}
    messages = campaign_schedule(spec, 1000)
    per_customer = Counter(m.user for m in messages)
    assert len(per_customer) == 2000
    assert set(per_customer.values()) == {1, 2, 3}
    assert 1.5 < len(messages) / 2000 < 1.9  # weights 50/30/20: 1.7 on average
    assert all(0 <= m.at <= 60.0 for m in messages)
    assert [m.at for m in messages] == sorted(m.at for m in messages)
    assert len({m.tag for m in messages}) == len(messages)
    assert sum(m.last for m in messages) == 2000
    # The answers decay after the broadcast: the first 20 s bring most customers.
    firsts: dict[str, float] = {}
    for m in messages:
        firsts.setdefault(m.user, m.at)
    early = sum(1 for at in firsts.values() if at < 20)
    assert 0.55 < early / 2000 < 0.75
    assert campaign_schedule(spec, 1000) == messages  # seeded


def test_a_ramp_rises_linearly_and_steady_load_is_even() -> None:
    spec = {"start_rate": 10.0, "end_rate": 110.0, "seconds": 10.0}
    messages = ramp_schedule(spec, 0)
    assert len(messages) == pytest.approx((10 + 110) / 2 * 10, abs=2)
    first_second = sum(1 for m in messages if m.at < 1)
    last_second = sum(1 for m in messages if m.at >= 9)
    assert first_second == pytest.approx(15, abs=1)
    assert last_second == pytest.approx(105, abs=1)
    assert ramp_rate(spec, 5.0) == 60.0
    assert len({m.user for m in messages}) == len(messages)
    steady = steady_schedule({"rate": 50.0, "seconds": 2.0}, 0)
    assert len(steady) == 100 and steady[1].at == pytest.approx(0.02)


def test_only_the_models_latency_inside_the_wait_is_subtracted() -> None:
    calls = [
        ModelCall(started=10.0, who="a", latency=3.0),  # inside: 3 s
        ModelCall(started=4.0, who="a", latency=7.0),  # from before the message: 1 s inside
        ModelCall(started=30.0, who="a", latency=5.0),  # after the reply: nothing
    ]
    assert model_overlap(calls, 10.0, 20.0) == pytest.approx(4.0)
    assert model_overlap([], 0.0, 1.0) == 0.0


def test_seconds_summary() -> None:
    summary = seconds_summary([float(i) for i in range(1, 101)])
    assert (summary["p50"], summary["p99"], summary["max"], summary["n"]) == (50, 99, 100, 100)


def _ramp(shed_at: float | None) -> dict:
    rows = [{"t": t, "replies": 10 * min(t, 8)} for t in range(14)]
    samples = [{"t": t / 2, "bot_cpu": 0.4 * t / 2} for t in range(24)]
    return {
        "per_second": rows,
        "first_shed_at": shed_at,
        "samples": samples,
        "schedule": {"start_rate": 10.0, "end_rate": 110.0, "seconds": 10.0},
    }


def test_the_knee_is_read_before_the_first_503() -> None:
    point = knee(_ramp(6.5))
    assert point["source"] == "first 503" and point["at_seconds"] == 6
    assert point["turns_per_second"] == pytest.approx((10 + 20 + 30 + 40 + 50) / 5)
    assert point["bot_cores"] == pytest.approx(0.4)
    assert point["turns_per_second_per_core"] == pytest.approx(30 / 0.4, rel=1e-3)
    assert point["offered_rate"] == 70.0


def test_without_a_503_the_knee_is_the_busiest_five_seconds() -> None:
    point = knee(_ramp(None))
    assert point["source"].startswith("no 503")
    assert point["turns_per_second"] == 80.0


def test_the_cpu_peak_is_the_busiest_window() -> None:
    # 0.5 s samples: idle, then one core for 2 s, then half a core.
    cpu, samples = 0.0, []
    for n in range(20):
        t = n / 2
        samples.append({"t": t, "bot_cpu": cpu})
        cpu += 0.5 if 2 <= t < 4 else 0.25 if t >= 4 else 0.0
    assert cores_peak(samples, "bot_cpu") == 1.0
    assert cores_peak(samples[:2], "bot_cpu") is None  # shorter than half a window
