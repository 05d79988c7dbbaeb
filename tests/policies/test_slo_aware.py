"""SLO-aware routing and the VM-path latency prediction, on hand-built snapshots."""

import math

import pytest

from policies.routing import Reason, Route, SloAware, make_policy, predict_burst_ms
from policies.state import (
    BurstState,
    LatencyQuantiles,
    LiveState,
    ModelStats,
    RouteRequest,
    VmState,
)
from policies.vm_perf import batch_service_ms, predict_vm_ms, replica_capacity_per_s

CURVE = ((1, 20.0), (8, 48.0))  # 20 ms alone, 48 ms for a batch of 8


def stats(**kw):
    return ModelStats(vm_service_ms_by_batch=CURVE, **kw)


def live(
    ready=1,
    booting=0,
    per_replica=(0,),
    burst=True,
    warm=None,
    free=None,
    boot_remaining_s=0.0,
    model=None,
    in_flight=0,
):
    vm = VmState(
        ready,
        booting,
        sum(per_replica),
        max_batch_size=8,
        outstanding_per_replica=tuple(per_replica),
        boot_remaining_s=boot_remaining_s,
        max_queue_delay_ms=2.0,
    )
    return LiveState(
        0.0,
        vm,
        burst,
        BurstState(
            in_flight=in_flight, warm_instances=warm, free_concurrency=free, cold_start_ms=1000.0
        ),
        {"m": model or stats(burst_predicted_ms=150.0)},
    )


def req(slo_ms=200.0, **kw):
    return RouteRequest(tenant="t", model="m", batch_size=1, slo_ms=slo_ms, **kw)


def test_batch_curve_interpolates_and_extrapolates():
    assert batch_service_ms(CURVE, 1) == 20.0
    assert batch_service_ms(CURVE, 8) == 48.0
    assert batch_service_ms(CURVE, 15) == pytest.approx(76.0)
    assert replica_capacity_per_s(stats(), 8) == pytest.approx(8 / 0.048)


def test_vm_prediction_grows_with_the_queue_and_counts_the_boot_wait():
    idle = predict_vm_ms(live().vm, stats(), 1, 0.5)
    assert idle == pytest.approx(20.0)  # one row, started at once: nothing could join it
    # 20 rows ahead: the running batch of 8 (half done at the median), one more full batch,
    # then its own batch with the 4 rows left over
    deep = predict_vm_ms(live(per_replica=(20,)).vm, stats(), 1, 0.5)
    assert deep == pytest.approx(0.5 * 48.0 + 48.0 + batch_service_ms(CURVE, 5))
    # at the SLO's percentile the running batch has barely started, and may hold a single row
    # with the 19 others queued behind it: one more round than a full running batch
    tail = predict_vm_ms(live(per_replica=(20,)).vm, stats(), 1, 0.99)
    assert tail == pytest.approx((0.99 * 20.0 + 2 * 48.0 + batch_service_ms(CURVE, 4)) * 1.1)
    assert tail > (0.99 * 48.0 + 48.0 + batch_service_ms(CURVE, 5)) * 1.1
    assert predict_vm_ms(live(ready=0, booting=0, per_replica=()).vm, stats(), 1) == math.inf
    booting = predict_vm_ms(
        live(ready=0, booting=1, per_replica=(), boot_remaining_s=3).vm, stats(), 1, 0.5
    )
    assert 3000 < booting < 3100


def test_the_service_time_spread_sets_the_tail_and_queueing_is_not_counted_twice():
    service = LatencyQuantiles(p50_ms=20, p90_ms=24, p99_ms=30, count=100)
    spread = stats(vm_service_latency=service)
    assert predict_vm_ms(live().vm, spread, 1, 0.99) == pytest.approx(20.0 * 1.5)
    assert predict_vm_ms(live().vm, spread, 1, 0.5) == pytest.approx(20.0)
    # latencies spread by queueing (p99 of 10x the median) do not widen the tail: the queue
    # is in the prediction already
    queued = stats(vm_latency=LatencyQuantiles(p50_ms=50, p90_ms=300, p99_ms=500, count=100))
    deep = live(per_replica=(20,)).vm
    assert predict_vm_ms(deep, queued, 1, 0.99) == predict_vm_ms(deep, stats(), 1, 0.99)


def test_cheapest_path_meeting_the_slo_is_the_vm_when_it_has_room():
    d = SloAware().route(req(), live(warm=10))
    assert (d.route, d.reason) == (Route.VM, Reason.VM_MEETS_SLO)
    assert d.predicted_ms == pytest.approx(20.0 * 1.1)  # one row, no batching wait


def test_spills_to_functions_when_the_vm_queue_would_miss_the_slo():
    d = SloAware().route(req(), live(per_replica=(40, 40), warm=10))
    assert (d.route, d.reason) == (Route.BURST, Reason.BURST_MEETS_SLO)
    assert d.predicted_ms == 150.0  # warm instances: no cold start added


def test_cold_functions_that_miss_the_slo_lose_to_a_vm_that_meets_it_for_most():
    # 30 rows ahead: the VM misses at the p99 but meets the SLO at the median
    d = SloAware().route(req(), live(per_replica=(30, 30), warm=0))
    assert (d.route, d.reason) == (Route.VM, Reason.FASTEST_VM)


def test_a_vm_that_misses_even_at_its_median_sends_the_request_to_cold_functions():
    """Its queue would make this request and every one behind it miss; a cold start misses
    once and leaves a warm instance (a burst onset: 40 rows ahead, nothing warm)."""
    for queue in ((40, 40), (400, 400)):
        d = SloAware().route(req(), live(per_replica=queue, warm=0))
        assert (d.route, d.reason) == (Route.BURST, Reason.VM_SATURATED)
        assert d.predicted_ms == 1150.0  # the plan's 150 ms and a cold start


def test_during_a_boot_requests_wait_for_the_replica_if_that_is_faster():
    state = live(ready=0, booting=1, per_replica=(), boot_remaining_s=0.5, warm=0)
    d = SloAware().route(req(slo_ms=100), state)
    assert (d.route, d.reason) == (Route.VM, Reason.VM_BOOTING)
    state = live(ready=0, booting=1, per_replica=(), boot_remaining_s=30, warm=0)
    assert SloAware().route(req(slo_ms=100), state).route == Route.BURST


def test_reject_only_when_no_path_can_serve():
    state = live(ready=0, booting=0, per_replica=(), free=2)  # 4 instances needed, 2 free
    d = SloAware().route(req(), state)
    assert (d.route, d.reason) == (Route.REJECT, Reason.NO_PATH)
    assert d.retry_after_s >= 1 and "no path" in d.message
    no_burst = live(ready=0, booting=0, per_replica=(), burst=False)
    assert SloAware().route(req(), no_burst).reason == Reason.NO_VM_READY
    assert SloAware().route(req(), live(per_replica=(400,), free=0)).route == Route.VM


def test_burst_prediction_without_a_plan_uses_observed_latencies():
    observed = ModelStats(burst_latency=LatencyQuantiles(100, 200, 300, count=50))
    assert predict_burst_ms(BurstState(), observed, 4, 0.99) == 300
    assert predict_burst_ms(BurstState(), ModelStats(), 4) > 1000  # unknown: assume cold
    assert predict_burst_ms(BurstState(warm_instances=0), observed, 4) == 1300  # known short
    assert predict_burst_ms(BurstState(warm_instances=10), ModelStats(), 4) < 1000  # warm pool


def test_a_cold_start_is_predicted_when_the_idle_warm_instances_run_out():
    """A request holds ``workers`` instances (the master runs one leg): 8 warm instances carry
    two 4-worker requests; the third would start cold."""
    observed = ModelStats(burst_latency=LatencyQuantiles(100, 200, 300, count=50))
    warm = BurstState(warm_instances=8, in_flight=1, cold_start_ms=5000.0)
    assert predict_burst_ms(warm, observed, 4) == 300
    busy = BurstState(warm_instances=8, in_flight=2, cold_start_ms=5000.0)
    assert predict_burst_ms(busy, observed, 4) == 5300
    plan_only = ModelStats(burst_predicted_ms=150.0)  # before any was observed
    assert predict_burst_ms(warm, plan_only, 4) == 150.0


def test_forced_routes_and_names():
    assert make_policy("slo-aware").name == "slo-aware"
    d = SloAware().route(req(forced_route="vm"), live(ready=0, booting=1, per_replica=()))
    assert (d.route, d.reason) == (Route.VM, Reason.VM_BOOTING)
    with pytest.raises(ValueError, match="no parameter 'nope'; it takes: spill_outstanding"):
        make_policy("threshold", nope=1)


def test_a_ready_vm_that_meets_the_slo_wins_over_cheaper_looking_functions():
    """A slow model alone in its batch bills a whole replica-second per request, more than a
    function would; but the VM is billed whether it serves or not, so it takes the request."""
    slow = ModelStats(vm_service_ms_by_batch=((1, 1100.0), (8, 1800.0)), burst_predicted_ms=1200.0)
    d = SloAware().route(req(slo_ms=7200), live(warm=10, model=slow))
    assert (d.route, d.reason) == (Route.VM, Reason.VM_MEETS_SLO)


def test_when_no_path_meets_the_slo_the_one_that_meets_it_for_more_requests_wins():
    # functions: a few slow answers in the window put their p99 over the SLO, most are quick;
    # the VM: a queue deep enough that nearly every request behind it misses
    tail = LatencyQuantiles(p50_ms=100.0, p90_ms=150.0, p99_ms=900.0, count=200)
    state = live(per_replica=(40, 40), warm=10, model=stats(burst_latency=tail))
    d = SloAware().route(req(), state)
    assert (d.route, d.reason) == (Route.BURST, Reason.VM_SATURATED)
    assert d.predicted_ms == pytest.approx(900.0)  # the VM is predicted faster at the p99
    # a queue that misses at the p99 but not at the median: functions that meet the SLO for
    # 90 % of requests beat a VM that meets it for half
    state = live(per_replica=(30, 30), warm=10, model=stats(burst_latency=tail))
    d = SloAware().route(req(), state)
    assert (d.route, d.reason) == (Route.BURST, Reason.FASTEST_BURST)
    # a VM that misses only in its tail keeps the request over a burst path that always misses
    shallow = live(per_replica=(5, 5), warm=0, model=stats(burst_latency=tail))
    d = SloAware().route(req(slo_ms=60.0), shallow)
    assert (d.route, d.reason) == (Route.VM, Reason.FASTEST_VM)


def test_the_vm_is_placed_against_the_functions_quantile_with_two_predictions():
    from policies.routing.slo_aware import _vm_met_around

    calls = []

    def vm(quantile):  # meets a 100 ms budget up to the 95th percentile
        calls.append(quantile)
        return 90.0 if quantile <= 0.95 else 120.0

    assert _vm_met_around(vm, 100.0, 0.9) == 0.95  # above the functions' 0.9: the VM wins
    assert calls == [0.9, 0.95]
    assert _vm_met_around(vm, 100.0, 0.95) == 0.95  # level: the faster at the p99 wins
    assert _vm_met_around(lambda q: 200.0 if q > 0.5 else 90.0, 100.0, 0.75) == 0.0


def test_a_vm_that_meets_the_slo_for_more_requests_than_the_functions_keeps_them():
    # functions: over the budget (~202 ms) from the p90 up; the VM, 25 rows ahead: over it
    # only at the p99
    tail = LatencyQuantiles(p50_ms=100.0, p90_ms=250.0, p99_ms=900.0, count=200)
    state = live(per_replica=(25, 25), warm=10, model=stats(burst_latency=tail))
    budget_ms = 224.0 * 0.9
    assert predict_vm_ms(state.vm, stats(), 1, 0.99) > budget_ms
    assert predict_vm_ms(state.vm, stats(), 1, 0.9) <= budget_ms
    d = SloAware().route(req(slo_ms=224.0), state)
    assert (d.route, d.reason) == (Route.VM, Reason.FASTEST_VM)
