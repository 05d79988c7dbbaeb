from policies.costs import (
    PriceTable,
    billed_ms,
    function_cost_usd,
    vm_fleet_cost_usd,
    vm_request_cost_usd,
)
from policies.routing import BurstOnly, Route, Threshold, VmOnly, make_policy
from policies.state import LiveState, RouteRequest, VmState

import pytest


def state(ready=1, outstanding=0, burst=True):
    return LiveState(now_s=0.0, vm=VmState(ready, 0, outstanding), burst_enabled=burst)


def req(**kw):
    return RouteRequest(tenant="t", model="m", batch_size=1, slo_ms=100, **kw)


def test_threshold_spills_only_past_the_queue_threshold():
    policy = Threshold(spill_outstanding_per_replica=4)
    assert policy.route(req(), state(ready=2, outstanding=7)).route == Route.VM
    assert policy.route(req(), state(ready=2, outstanding=8)).route == Route.BURST
    assert policy.route(req(), state(ready=0)).route == Route.BURST
    assert policy.route(req(), state(ready=0, burst=False)).route == Route.REJECT
    assert policy.route(req(), state(ready=1, outstanding=99, burst=False)).route == Route.VM


def test_forced_route_wins_unless_impossible():
    for policy in (VmOnly(), BurstOnly(), Threshold()):
        d = policy.route(req(forced_route="burst", workers=4), state())
        assert (d.route, d.workers) == (Route.BURST, 4)
        assert policy.route(req(forced_route="vm"), state(outstanding=1000)).route == Route.VM
        assert policy.route(req(forced_route="vm"), state(ready=0)).route == Route.REJECT
        assert policy.route(req(forced_route="burst"), state(burst=False)).route == Route.REJECT


def test_make_policy_rejects_unknown_names():
    assert make_policy("vm-only").name == "vm-only"
    with pytest.raises(ValueError, match="known: vm-only"):
        make_policy("cheapest")


def test_costs():
    prices = PriceTable(vm_usd_per_hour=3.6)
    assert vm_request_cost_usd(prices, 1000.0, batch_size=4) == pytest.approx(0.00025)
    assert vm_fleet_cost_usd(prices, 10) == pytest.approx(0.06)  # one-minute minimum
    assert billed_ms(prices, 12.01) == 13 and billed_ms(prices, 12.0) == 12
    # 1 GB for 1 s, twice: 2 GB-s plus two requests
    assert function_cost_usd(prices, [(1000, 1024), (1000, 1024)]) == pytest.approx(
        2 * prices.fn_usd_per_gb_s + 2 * prices.fn_usd_per_request
    )
