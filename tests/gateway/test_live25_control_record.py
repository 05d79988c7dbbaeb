"""The control loop's record holds what the predictive scaler reads: a fresh scaler fed the
recorded ticks decides as the live one did, tick by tick."""

from __future__ import annotations

import json

from gateway.control_log import state_of_record, tick_record
from ops.bench.sim_vs_real_ticks import state_of
from policies.autoscaling import ScaleDecision
from policies.autoscaling.predictive import Predictive
from policies.state import BurstState, LatencyQuantiles, LiveState, ModelStats, VmState

CURVES = {"a": ((1, 25.0), (8, 44.5)), "b": ((1, 66.0), (8, 92.6))}


def _ticks() -> list[LiveState]:
    """Two models on one fleet through a lull, a burst past one replica, and a lull again."""
    states, ready = [], 1
    for t in range(120):
        rate = 140.0 if 20 <= t < 70 else 20.0
        ready = 2 if t >= 40 else 1
        models = {
            name: ModelStats(
                arrival_rate_short_per_s=rate / 2 + (1.5 if name == "b" else 0.0),
                arrival_rate_long_per_s=35.0,
                vm_service_ms_by_batch=curve,
                burst_latency=LatencyQuantiles(72.0, 90.0, 140.0, 40) if t > 22 else None,
                burst_predicted_ms=79.5,
                burst_usd=1.4e-6,
                slo_ms=250.0,
                slo_answered=10 * t,
            )
            for name, curve in CURVES.items()
        }
        vm = VmState(ready, 0, 12 if rate > 100 else 1, 8, ready, (6,) * ready, 0.0, 15.0)
        burst = BurstState(5 if 20 <= t < 40 else 0, 2, 6, 0, 1669.0, 1024, 1)
        states.append(LiveState(1000.0 + t, vm, True, burst, models, rate, 35.0))
    return states


def _decisions(states) -> list[tuple]:
    scaler = Predictive(min_replicas=1, max_replicas=3, max_warm_functions=8)
    return [(d.replicas, d.reason, d.warm_functions) for d in map(scaler.decide, states)]


def test_a_fresh_scaler_on_the_recorded_ticks_decides_as_live():
    states = _ticks()
    live = _decisions(states)
    assert {r for r, _, _ in live} == {1, 2}  # (the ticks make it scale out and in)
    lines = [json.dumps(tick_record(s, ScaleDecision(1, "logged", 0))) for s in states]
    replayed = _decisions([state_of_record(json.loads(line)) for line in lines])
    assert replayed == live
    # the old reconstruction (rates, replicas, in flight) lost the per-model curves, prices
    # and the burst path's workers: a fresh predictive scaler decided otherwise
    assert _decisions([state_of(json.loads(line)) for line in lines]) != live
