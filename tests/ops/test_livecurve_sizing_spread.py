"""ops/bench/sim_vs_real_live25.py's sizing-rate spread: what the learnt curves' noise added to
the rate the predictive scaler sized the fleet by, read from a kept run's control record."""

from __future__ import annotations

import pytest

from gateway.control_log import tick_record
from ops.bench.sim_vs_real_live25 import sizing_spread
from policies.autoscaling import ScaleDecision
from policies.state import BurstState, LiveState, ModelStats, VmState


def _record(now_s: float, b8_ms: float, rate: float = 50.0) -> dict:
    model = ModelStats(
        arrival_rate_short_per_s=rate, vm_service_ms_by_batch=((1, 25.0), (8, b8_ms)), slo_ms=250.0
    )
    state = LiveState(now_s, VmState(1, 0, 0), True, BurstState(), {"m": model}, rate, rate)
    return tick_record(state, ScaleDecision(1, "forecast base"))


def test_a_noisy_curve_shows_in_the_live_spread_and_not_in_the_held_one():
    records = [_record(float(t), 44.0 if t % 2 else 54.0) for t in range(10)]
    spread = sizing_spread(records, 0.7)
    held, live = spread["curves held"], spread["live"]
    assert held["step_max"] == 0.0 and held["min"] == held["max"] == pytest.approx(8 / 44 * 700)
    assert live["step_p50"] == pytest.approx(8 / 44 * 700 - 8 / 54 * 700)
    assert live["ticks"] == 10


def test_ticks_without_traffic_or_a_full_batch_point_are_left_out():
    records = [_record(0.0, 44.0, rate=0.0), _record(1.0, 44.0), _record(2.0, 44.0)]
    records[2]["models"]["m"]["batch_ms"] = [[1, 25.0], [4, 33.0]]  # no batch of 8 seen yet
    assert sizing_spread(records, 0.7)["live"]["ticks"] == 1
    assert sizing_spread(records[:1], 0.7) == {}
