"""The async SLO class: a request with a deadline queues when idle VM capacity serves it in
time; otherwise the wrapped policy decides. Jobs near their deadline stop waiting."""

import math

from policies.routing import Reason, Route, VmOnly
from policies.routing.async_class import QueueFirst, predicted_queue_wait_s, serve_now
from policies.state import LiveState, ModelStats, QueueState, RouteRequest, VmState

CURVE = ((1, 20.0), (8, 80.0))  # one replica: 8 rows per 80 ms = 100 rows/s


def state(depth=0, ready=1, booting=0, rate=0.0):
    return LiveState(
        0.0,
        VmState(ready, booting, 0, max_batch_size=8),
        False,
        models={"m": ModelStats(vm_service_ms_by_batch=CURVE)},
        arrival_rate_long_per_s=rate,
        queue=QueueState(depth=depth),
    )


def req(deadline_s=None, forced=None):
    return RouteRequest("t", "m", 1, 500.0, forced_route=forced, deadline_s=deadline_s)


def test_the_wait_is_the_queue_ahead_over_the_capacity_interactive_traffic_leaves():
    assert predicted_queue_wait_s(state(depth=99), "m") == 1.0  # 100 jobs at 100/s
    assert predicted_queue_wait_s(state(depth=99, rate=50.0), "m") == 2.0  # half is busy
    assert predicted_queue_wait_s(state(depth=99, ready=2), "m") == 0.5
    # saturated VMs still drain a little (jobs near their deadline are served anyway)
    assert predicted_queue_wait_s(state(depth=9, rate=500.0), "m") == 1.0
    assert predicted_queue_wait_s(state(ready=0), "m") == math.inf


def test_a_request_with_a_deadline_queues_when_the_queue_meets_it():
    policy = QueueFirst(VmOnly(), deadline_share=0.5)
    queued = policy.route(req(deadline_s=60.0), state(depth=1000))  # ~10 s <= 30 s
    assert queued.route == Route.QUEUE and queued.reason == Reason.QUEUE_MEETS_DEADLINE
    assert 9_000 < queued.predicted_ms < 11_000


def test_otherwise_the_wrapped_policy_decides():
    policy = QueueFirst(VmOnly(), deadline_share=0.5)
    assert policy.route(req(deadline_s=10.0), state(depth=1000)).route == Route.VM  # too deep
    assert policy.route(req(), state()).route == Route.VM  # interactive: no deadline
    assert policy.route(req(deadline_s=60.0, forced="vm"), state()).reason == Reason.FORCED
    assert policy.route(req(deadline_s=60.0), state(ready=0)).route == Route.REJECT
    # an idle queue still costs a pick-up: a deadline shorter than that is served at once
    assert policy.route(req(deadline_s=0.001), state(ready=100)).route == Route.VM


def test_a_job_stops_waiting_for_idle_vms_past_its_urgent_fraction():
    assert not serve_now(age_s=29.0, deadline_s=60.0, urgent_fraction=0.5)
    assert serve_now(age_s=30.0, deadline_s=60.0, urgent_fraction=0.5)


def test_the_queue_drains_no_faster_than_its_consumers_take_jobs():
    """Each consumer serves one job and waits for its answer (a batch of one, 20 ms here): two
    drain ~100 jobs/s whatever the fleet's spare at full batches (VGG-16's async tenant was
    queued for a fleet's full-batch rate and attained 85 %)."""
    many = LiveState(
        0.0,
        VmState(10, 0, 0, max_batch_size=8),
        False,
        models={"m": ModelStats(vm_service_ms_by_batch=CURVE)},
        queue=QueueState(depth=99, consumers=2),
    )
    assert predicted_queue_wait_s(state(depth=99, ready=10), "m") == 0.1  # 1,000 rows/s
    assert 0.9 <= predicted_queue_wait_s(many, "m") <= 1.2  # 2 consumers x ~50 jobs/s


def test_with_only_booting_replicas_the_wait_starts_when_the_first_is_up():
    booting = LiveState(
        0.0,
        VmState(0, 1, 0, max_batch_size=8, boot_remaining_s=40.0),
        False,
        models={"m": ModelStats(vm_service_ms_by_batch=CURVE)},
        queue=QueueState(depth=99),
    )
    assert predicted_queue_wait_s(booting, "m") == 41.0
    assert QueueFirst(VmOnly()).route(req(deadline_s=60.0), booting).route == Route.VM
