"""Session 22 (idle22, rand4's mlp runs): where the SLO is a few milliseconds, the gateway's own
time (~1.5 ms, which no path's prediction holds) takes more than the routing margin's 10 %:
functions whose p99 is 7.9 ms answer in 9.4 ms, late for a 9 ms SLO."""

from __future__ import annotations

import pytest

from ops.sim import SimProfile, simulate
from ops.traces import read_trace
from policies.autoscaling.base import functions_meet_slo
from policies.routing import Route
from policies.routing.slo_aware import SloAware, path_budget_ms
from policies.state import (
    BurstState,
    LatencyQuantiles,
    LiveState,
    ModelStats,
    RouteRequest,
    VmState,
)

BURST_7_9 = LatencyQuantiles(p50_ms=5.0, p90_ms=6.5, p99_ms=7.9, count=200)
BURST_7_0 = LatencyQuantiles(p50_ms=4.5, p90_ms=6.0, p99_ms=7.0, count=200)


def _state(slo_ms: float, outstanding: int, burst: LatencyQuantiles = BURST_7_9) -> LiveState:
    stats = ModelStats(
        vm_service_ms_by_batch=((1, 1.0), (8, 1.2)), slo_ms=slo_ms, burst_latency=burst
    )
    vm = VmState(1, 0, outstanding, outstanding_per_replica=(outstanding,))
    burst = BurstState(warm_instances=100, free_concurrency=100)
    return LiveState(0.0, vm, True, burst, {"m": stats})


def test_the_budget_keeps_the_gateways_time_back_under_short_slos():
    assert path_budget_ms(9.0, 0.9) == pytest.approx(7.5)
    assert path_budget_ms(300.0, 0.9) == pytest.approx(270.0)  # the margin's share, as before


def test_a_vm_late_by_the_gateways_time_gives_way_to_functions_on_time():
    # a 9 ms SLO: the VM's queue predicts 7.7 ms at p99 (within 0.9 of the SLO, so it took the
    # request before: 9.2 ms with the gateway's time, late); functions predict 7.0 (8.5, on time)
    request = RouteRequest("t", "m", 1, 9.0)
    decision = SloAware().route(request, _state(9.0, outstanding=40, burst=BURST_7_0))
    assert decision.route == Route.BURST and decision.predicted_ms + 1.5 <= 9.0, decision
    # functions at 7.9 ms (9.4 with the gateway's time) are not said to meet it
    decision = SloAware().route(request, _state(9.0, outstanding=44))
    assert decision.reason.value != "burst-meets-slo", decision


def test_the_scaler_does_not_count_on_functions_the_gateway_makes_late():
    assert not functions_meet_slo(_state(9.0, 0))  # 7.9 + 1.5 > 9 (before: True)
    assert functions_meet_slo(_state(10.0, 0))


def test_mlp_at_a_9_ms_slo_meets_it_over_an_mmpp_hour():
    # rand4 s3's rates: the scaler let its VM go where none paid and functions took every
    # request, 1.6 % of them late by the gateway's time (98.36 %)
    profile = SimProfile.reference("mlp").with_overrides(slo_ms=9.0)
    spec = "synth:mmpp:duration_s=3600,low_rps=11.3,high_rps=127.3,mean_low_s=893,mean_high_s=67"
    summary = simulate(read_trace(spec, seed=303), "slo-aware", profile, seed=303).summary
    assert summary["slo_attainment"] >= 0.99, summary["slo_attainment"]
