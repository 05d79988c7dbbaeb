"""The VM prediction at the SLO's percentile: the queue power-of-two choices lands on, and the
learnt correction."""

from __future__ import annotations

import random

import pytest

from policies.state import ModelStats, VmState
from policies.vm_perf import MAX_PREDICTION_FACTOR, _queued_rows, predict_vm_ms

CURVE = ((1, 1100.0), (8, 1800.0))  # the delay model: 1 s per batch plus 100 ms per row


def vm(per: tuple[int, ...]) -> VmState:
    return VmState(len(per), 0, sum(per), 8, len(per), per)


def p2c_pick(rng: random.Random, per: tuple[int, ...]) -> int:
    """What vmpool.pool_routing does: two distinct replicas, the less loaded one."""
    a, b = rng.sample(range(len(per)), 2)
    return min(per[a], per[b])


@pytest.mark.parametrize(
    "per", [(0, 4), (0, 4, 20), (3, 9, 12, 30), (1, 2, 5, 8, 13, 21, 34), tuple(range(20))]
)
def test_the_queue_at_the_slo_percentile_bounds_99_percent_of_picks(per):
    rng = random.Random(7)
    picks = [p2c_pick(rng, per) for _ in range(20000)]
    q99 = _queued_rows(vm(per), 0.99)
    assert sum(p > q99 for p in picks) / len(picks) <= 0.01
    # and it is the tightest such bound: one step lower, more than 1 % of picks are above
    lower = max((p for p in per if p < q99), default=None)
    if lower is not None:
        assert sum(p > lower for p in picks) / len(picks) > 0.01


def test_with_three_replicas_the_tail_pick_is_the_second_longest_queue():
    # the typical pick sits behind none; one in three sits behind the 12 rows of the middle one
    assert _queued_rows(vm((0, 12, 30)), 0.5) == 0
    assert _queued_rows(vm((0, 12, 30)), 0.99) == 12
    stats = ModelStats(vm_service_ms_by_batch=CURVE)
    three = predict_vm_ms(vm((30, 0, 12)), stats, 1, 0.99)
    assert three == pytest.approx(predict_vm_ms(vm((12,)), stats, 1, 0.99))
    assert three > predict_vm_ms(vm((0,)), stats, 1, 0.99) + 1800.0  # a full batch ahead


def test_two_replicas_always_pick_the_shorter_queue():
    assert _queued_rows(vm((20, 3)), 0.99) == 3


def test_the_learnt_factor_scales_the_prediction_within_bounds():
    base = ModelStats(vm_service_ms_by_batch=CURVE)
    plain = predict_vm_ms(vm((10,)), base, 1, 0.99)
    slower = ModelStats(vm_service_ms_by_batch=CURVE, vm_prediction_factor=1.4)
    assert predict_vm_ms(vm((10,)), slower, 1, 0.99) == pytest.approx(1.4 * plain)
    runaway = ModelStats(vm_service_ms_by_batch=CURVE, vm_prediction_factor=50.0)
    assert predict_vm_ms(vm((10,)), runaway, 1, 0.99) == pytest.approx(
        MAX_PREDICTION_FACTOR * plain
    )
