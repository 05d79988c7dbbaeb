"""Autoscalers in simulated time: a ManualClock moves, the scalers see snapshots."""

import pytest

from policies.autoscaling import FixedScaler, Knative, Predictive, TargetTracking, make_autoscaler
from policies.state import BurstState, LiveState, ManualClock, ModelStats, VmState

CURVE = ((1, 20.0), (8, 48.0))  # capacity of one replica: 8 / 48 ms = 166.7 rows/s


def snap(
    clock, in_flight=0, ready=1, rate=0.0, booting=0, desired=0, burst_in_flight=0, boot_s=20.0
):
    vm = VmState(
        ready, booting, in_flight, max_batch_size=8, desired_replicas=desired, boot_s=boot_s
    )
    return LiveState(
        clock.now(),
        vm,
        True,
        BurstState(in_flight=burst_in_flight),
        {"m": ModelStats(vm_service_ms_by_batch=CURVE)},
        arrival_rate_short_per_s=rate,
    )


def run(scaler, clock, seconds, **kw):
    out = []
    for _ in range(int(seconds)):
        clock.advance(1.0)
        out.append(scaler.desired(snap(clock, **kw)))
    return out


def test_none_keeps_the_configured_count_within_bounds():
    clock = ManualClock()
    assert FixedScaler(3, 1, 8).desired(snap(clock, in_flight=500)) == 3
    assert FixedScaler(12, 1, 8).desired(snap(clock)) == 8


def test_target_tracking_scales_out_at_once_and_in_after_the_cooldown():
    clock, scaler = (
        ManualClock(),
        TargetTracking(
            4.0, metric_window_s=5, scale_in_cooldown_s=60, min_replicas=1, max_replicas=8
        ),
    )
    assert run(scaler, clock, 10, in_flight=20, ready=1)[-1] == 5
    assert run(scaler, clock, 10, in_flight=200, ready=5)[-1] == 8  # max_replicas
    calm = run(scaler, clock, 70, in_flight=0, ready=8)
    assert calm[:45] == [8] * 45  # cooldown: no scale-in within 60 s of the last change
    assert calm[-1] == 1  # then down to min_replicas


def test_knative_panics_on_a_spike_and_holds_until_a_stable_window_passes():
    clock = ManualClock()
    scaler = Knative(
        4.0,
        stable_window_s=60,
        panic_window_s=6,
        panic_threshold=2.0,
        min_replicas=1,
        max_replicas=20,
    )
    assert run(scaler, clock, 60, in_flight=4, ready=1)[-1] == 1 and not scaler.panicking
    spike = run(scaler, clock, 6, in_flight=40, ready=1)
    assert scaler.panicking
    # within the 6 s panic window it asks for what the spike needs, not the 60 s average
    assert spike[-1] == 10
    stable_only = Knative(4.0, panic_threshold=1e9, min_replicas=1, max_replicas=20)
    clock2 = ManualClock()
    run(stable_only, clock2, 60, in_flight=4, ready=1)
    assert run(stable_only, clock2, 6, in_flight=40, ready=1)[-1] < 5
    # load drops: no scale-down while panicking ...
    after = run(scaler, clock, 50, in_flight=4, ready=10)
    assert after == [10] * 50 and scaler.panicking
    # ... and back to the stable window once 60 s passed without a panic trigger
    later = run(scaler, clock, 70, in_flight=4, ready=10)
    assert not scaler.panicking and later[-1] < 10


def test_knative_does_not_panic_below_200_percent():
    clock = ManualClock()
    scaler = Knative(4.0, min_replicas=1, max_replicas=20)
    run(scaler, clock, 60, in_flight=4, ready=2)
    run(scaler, clock, 6, in_flight=15, ready=2)  # 15/4 = 3.75 replicas: 188 % of 2
    assert not scaler.panicking


def test_predictive_sizes_vms_for_the_base_and_scales_ahead_of_a_ramp():
    clock = ManualClock()
    scaler = Predictive(base_quantile=0.5, target_utilization=0.5, min_replicas=1, max_replicas=10)
    steady = run(scaler, clock, 30, rate=200.0, ready=3)
    assert steady[-1] == 3  # 200 / (166.7 * 0.5) = 2.4 -> 3
    ramp_scaler, clock2 = (
        Predictive(base_quantile=0.5, target_utilization=0.5, min_replicas=1, max_replicas=10),
        ManualClock(),
    )
    run(ramp_scaler, clock2, 30, rate=100.0, ready=2)
    got = []
    for i in range(30):  # a sustained ramp, +5 req/s each second
        clock2.advance(1.0)
        got.append(ramp_scaler.desired(snap(clock2, rate=100.0 + 5 * (i + 1), ready=2)))
    now_needs = -(-250 / (166.7 * 0.5) // 1)  # what the present rate alone asks for
    assert got[-1] > now_needs


def step_run(scaler, base_rate, seconds=120, step_at_s=60):
    """A step to 4x at ``step_at_s``, seen through a 10 s rate window as the gateway sees it."""
    clock, rates, out = ManualClock(), [], []
    for t in range(seconds):
        rates.append(base_rate * (4 if t >= step_at_s else 1))
        clock.advance(1.0)
        out.append(scaler.desired(snap(clock, rate=sum(rates[-10:]) / 10, ready=2)))
    return out


def test_predictive_does_not_overshoot_a_step():
    """A step to 4x reaches the 10 s rate window as a 10 s ramp; the default trend must not
    extrapolate that ramp past the plateau (alpha 0.5, beta 0.2, damping 0.95 asked for 6 VMs
    where 3 carry the plateau at 70 %)."""
    need = 320 / (166.7 * 0.7)  # 2.74
    got = step_run(Predictive(min_replicas=1, max_replicas=20), 80.0)
    assert max(got) == 3 > need and got[-1] == 3
    lively = Predictive(
        level_alpha=0.5, trend_beta=0.2, trend_damping=0.95, min_replicas=1, max_replicas=20
    )
    assert max(step_run(lively, 80.0)) >= 5


def test_predictive_scale_in_waits_and_respects_min():
    clock = ManualClock()
    scaler = Predictive(base_quantile=0.5, scale_in_cooldown_s=30, min_replicas=2, max_replicas=10)
    run(scaler, clock, 20, rate=500.0, ready=5)
    high = scaler.desired(snap(clock, rate=500.0, ready=5))
    drop = run(scaler, clock, 60, rate=0.0, ready=high)
    assert drop[5] == high  # not before the cooldown
    assert drop[-1] == 2  # min_replicas


def test_predictive_keeps_functions_warm_for_the_forecast_error_and_counts_the_cost():
    clock = ManualClock()
    scaler = Predictive(base_quantile=0.5, max_warm_functions=50, min_replicas=1, max_replicas=1)
    for i in range(30):  # a noisy rate: the upper band exceeds the one VM allowed
        clock.advance(1.0)
        d = scaler.decide(snap(clock, rate=100.0 + (150.0 if i % 2 else -50.0), ready=1))
    assert d.replicas == 1
    assert 0 < d.warm_functions <= 50
    # held as provisioned concurrency is billed: GB-s whether or not they serve
    assert d.warm_cost_usd_per_s == pytest.approx(d.warm_functions * 1.0 * 0.0000041667)
    assert Predictive(min_replicas=1).decide(snap(clock, rate=1e4)).warm_functions == 0


def test_bad_parameters_are_clear_errors():
    with pytest.raises(ValueError, match="known: none"):
        make_autoscaler("magic")
    with pytest.raises(ValueError, match="bad parameters"):
        make_autoscaler("target", stable_window_s=3)
    with pytest.raises(ValueError, match="min_replicas"):
        make_autoscaler("none", min_replicas=5, max_replicas=2)
