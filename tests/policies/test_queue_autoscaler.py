"""The KEDA-style queue-length autoscaler in simulated time (a ManualClock moves)."""

import pytest

from gateway.policy_settings import QueueScaling
from policies.autoscaling import QueueLength, make_autoscaler
from policies.state import LiveState, ManualClock, QueueState, VmState


def snap(clock, depth=0, running=0, in_flight=0, ready=1):
    return LiveState(
        clock.now(),
        VmState(ready, 0, in_flight, desired_replicas=ready),
        False,
        queue=QueueState(depth=depth, running=running, oldest_age_s=0.0),
    )


def test_replicas_follow_the_queue_length_within_bounds():
    clock = ManualClock()
    scaler = QueueLength(target_per_replica=10, cooldown_s=0, min_replicas=1, max_replicas=5)
    assert scaler.desired(snap(clock, depth=0)) == 1  # min
    assert scaler.desired(snap(clock, depth=25)) == 3  # ceil(25 / 10)
    assert scaler.desired(snap(clock, depth=15, running=6)) == 3  # running jobs count too
    assert scaler.desired(snap(clock, depth=900)) == 5  # max


def test_a_queue_under_the_activation_depth_wakes_no_replica():
    clock = ManualClock()
    scaler = QueueLength(target_per_replica=10, activation_depth=5, cooldown_s=0, min_replicas=0)
    assert scaler.desired(snap(clock, depth=5, ready=0)) == 0
    decision = scaler.decide(snap(clock, depth=6, ready=0))
    assert decision.replicas == 1 and "queue" in decision.reason


def test_scale_in_waits_for_the_cooldown_scale_out_does_not():
    clock = ManualClock()
    scaler = QueueLength(target_per_replica=10, cooldown_s=60, min_replicas=1, max_replicas=8)
    assert scaler.desired(snap(clock, depth=40)) == 4  # out at once
    seen = []
    for _ in range(59):
        clock.advance(1.0)
        seen.append(scaler.desired(snap(clock, depth=0, ready=4)))
    assert set(seen) == {4}  # drained, but within the cooldown
    clock.advance(1.0)
    assert scaler.desired(snap(clock, depth=0, ready=4)) == 1
    clock.advance(1.0)
    assert scaler.desired(snap(clock, depth=80, ready=1)) == 8


def test_the_in_flight_trigger_wins_when_it_asks_for_more():
    clock = ManualClock()
    scaler = QueueLength(target_per_replica=10, target_in_flight_per_replica=4, cooldown_s=0)
    decision = scaler.decide(snap(clock, depth=10, in_flight=20))
    assert decision.replicas == 5 and "in-flight" in decision.reason


def test_selectable_in_config_with_bad_parameters_refused():
    scaler = QueueScaling(policy="queue", target_per_replica=5, max_replicas=3).build(1)
    assert isinstance(scaler, QueueLength) and scaler.max_replicas == 3
    assert scaler.desired(snap(ManualClock(), depth=11)) == 3
    with pytest.raises(ValueError):
        make_autoscaler("queue", target_per_replica=0)


def test_warm_functions_are_kept_only_while_the_queue_is_active():
    clock = ManualClock()
    scaler = QueueLength(target_per_replica=10, activation_depth=2, cooldown_s=0, warm_functions=3)
    idle, active = scaler.decide(snap(clock, depth=2)), scaler.decide(snap(clock, depth=30))
    assert (idle.warm_functions, idle.warm_cost_usd_per_s) == (0, 0.0)
    assert active.warm_functions == 3 and active.warm_cost_usd_per_s > 0.0
    assert scaler.decide(snap(clock, depth=0, running=0)).warm_functions == 0  # drained: released
    assert QueueLength().decide(snap(clock, depth=30)).warm_functions == 0  # off by default
    with pytest.raises(ValueError):
        QueueLength(warm_functions=-1)
