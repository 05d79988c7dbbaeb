"""Replica choice on a fleet serving several models (policies/routing/replica_choice.py): a tight
model's request goes where no heavy model's batch is in its way; one model keeps power of two
choices' pick. And slo-aware's second look once the replica is known (``replica_misses``)."""

from __future__ import annotations

import pytest

from policies.routing import Reason, Route, SloAware
from policies.routing.replica_choice import ModelWork, answer_ms, choose_replica, drain_ms
from policies.state import BurstState, LiveState, ModelStats, RouteRequest, VmState

MLP = ModelWork(((1, 0.1), (32, 0.11)), 32)
RESNET = ModelWork(((1, 21.0), (8, 142.0)), 8)
DELAY = ModelWork(((1, 60.0), (8, 90.0)), 8, computes=False)


def test_the_tight_request_skips_the_replica_whose_rows_are_a_heavy_batch():
    # power of two drew replicas 0 and 1; 0 has fewer rows, but they are 3 ResNet-50 rows
    held = [[0, 3], [5, 0], [2, 8]]
    assert choose_replica(held, 0, [MLP, RESNET], 0, 1) == 1
    assert answer_ms(held[1], 0, [MLP, RESNET]) < 1.0  # its own 6 rows: one mlp batch
    assert answer_ms(held[0], 0, [MLP, RESNET]) > 50.0  # behind three ResNet-50 rows


def test_it_looks_past_the_two_draws_when_both_are_in_the_way():
    held = [[0, 1], [0, 2], [0, 0], [1, 8]]
    assert choose_replica(held, 0, [MLP, RESNET], 0, 1) == 2


def test_with_every_replica_in_the_way_it_takes_the_least_heavy_work():
    held = [[0, 8], [0, 16], [0, 1]]
    assert choose_replica(held, 0, [MLP, RESNET], 0, 1) == 2


@pytest.mark.parametrize(
    "held,a,b,expected",
    [
        ([[3], [1]], 0, 1, 1),
        ([[1], [3]], 0, 1, 0),
        ([[2], [2]], 1, 0, 1),
        ([[9], [0], [4]], 0, 2, 2),
    ],
)
def test_one_model_keeps_power_of_two_choices_pick(held, a, b, expected):
    assert choose_replica(held, 0, [RESNET], a, b) == expected


def test_models_that_only_wait_keep_the_pick_too():
    # the delay model's batches take no core: a tight request does not wait behind them
    held = [[0, 1], [3, 0]]
    assert choose_replica(held, 0, [MLP, RESNET], 0, 1) == 1  # (a ResNet-50 row is in the way)
    assert choose_replica(held, 0, [MLP, DELAY], 0, 1) == 0
    assert choose_replica(held, 1, [DELAY, DELAY], 0, 1) == 0


def test_the_heavy_model_does_not_flee_a_tight_models_rows_it_barely_waits_for():
    # ResNet-50's pick holds 2 mlp rows (0.1 ms): elsewhere it would wait for ResNet-50 rows
    held = [[2, 0], [0, 1], [0, 3]]
    assert choose_replica(held, 1, [MLP, RESNET], 0, 2) == 0


def test_drain_is_full_batches_then_the_rest():
    assert drain_ms(0, RESNET) == 0.0
    assert drain_ms(8, RESNET) == pytest.approx(142.0)
    assert drain_ms(9, RESNET) == pytest.approx(142.0 + 21.0)
    with pytest.raises(ValueError, match="max_batch_size"):
        ModelWork(((1, 1.0),), 0)


def _live(burst_ms: float, burst: bool = True) -> LiveState:
    vm = VmState(2, 0, 4, outstanding_per_replica=(1, 3))
    model = ModelStats(vm_service_ms_by_batch=((1, 0.2),), burst_predicted_ms=burst_ms)
    return LiveState(0.0, vm, burst, BurstState(warm_instances=8, free_concurrency=8), {"m": model})


def _req(slo_ms: float = 20.0, **kw) -> RouteRequest:
    return RouteRequest(tenant="t", model="m", batch_size=1, slo_ms=slo_ms, **kw)


def test_slo_aware_sends_to_functions_a_request_its_replica_answers_too_late():
    policy = SloAware()
    assert policy.budget_ms(_req()) == pytest.approx(18.0)  # 0.9 of 20 ms
    late = policy.replica_misses(_req(), _live(burst_ms=8.0), 142.0)  # behind a ResNet-50 batch
    assert late is not None and late.route is Route.BURST
    assert late.reason is Reason.REPLICA_MISSES and late.predicted_ms == pytest.approx(8.0)


@pytest.mark.parametrize(
    "replica_ms,burst_ms,burst,forced",
    [(10.0, 8.0, True, None), (142.0, 30.0, True, None), (142.0, 8.0, False, None)]
    + [(142.0, 8.0, True, "vm")],
)
def test_the_vm_keeps_it_when_its_replica_meets_or_functions_do_not(
    replica_ms, burst_ms, burst, forced
):
    policy = SloAware()
    assert (
        policy.replica_misses(_req(forced_route=forced), _live(burst_ms, burst), replica_ms) is None
    )
