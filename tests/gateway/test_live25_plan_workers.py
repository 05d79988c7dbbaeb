"""The live view tells the autoscaler how many functions a burst request runs on: its plan's, not
the configured default (which a model that cannot split does not use)."""

from __future__ import annotations

import asyncio

from burst.backend import BurstStats
from burst.service import BurstService
from gateway.live import LiveCollector
from policies.autoscaling.spill_price import request_usd
from policies.costs import PriceTable
from policies.state import LatencyQuantiles, ManualClock
from tests.gateway.test_burst_path import _settings


class _OneFunctionPlans:
    """A burst backend whose plans run each request on one function (the delay model's)."""

    def live_stats(self) -> BurstStats:
        return BurstStats(None, 8, {"m": 70.0}, {"m": 1.2e-6}, {"m": 1})


def test_a_spill_is_priced_at_the_functions_its_plan_runs_on():
    clock = ManualClock()
    collector = LiveCollector(
        pool=None,
        burst=_OneFunctionPlans(),
        model_slos_ms={"m": 250.0},
        clock=clock.now,
        default_workers=4,  # the configured default, which this model's plan does not use
    )
    for _ in range(10):  # warm burst answers of 70 ms: the price follows them
        collector.burst_finished("m", 70.0, 0, token=collector.burst_started(4))
    state = collector.snapshot(fresh=True)
    assert state.burst.default_workers == 1
    prices = PriceTable()
    one_function = 0.070 * 1.0 * prices.fn_usd_per_gb_s + prices.fn_usd_per_request
    # four functions' price (x4: 5.5e-6 for 1.4e-6) booted VMs 20-25 s before the simulator did
    assert abs(request_usd(state, prices, None, None) - one_function) < 0.05 * one_function
    assert state.models["m"].burst_latency == LatencyQuantiles(70.0, 70.0, 70.0, 10)


def test_the_burst_service_reports_its_plans_workers(model_server, small_repo, tmp_path):
    service = BurstService.from_settings(_settings(tmp_path, small_repo, model_server))
    before = service.live_stats()
    plan = asyncio.run(service.plan_for("resnet18", 4, 1))
    assert service.live_stats().workers == {"resnet18": plan.workers}
    # a snapshot taken earlier does not change under its reader (the scaler reads it on a tick)
    assert (before.workers, before.predicted_ms, before.predicted_usd) == ({}, {}, {})
