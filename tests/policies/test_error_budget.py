"""SLO-aware routing spends the SLO's error budget: while the misses of the last hour leave
room, a queue that meets the SLO at the median of its calibrated prediction stays on the VM
(its p99 does not), and as misses approach the budget routing protects p99 again."""

from __future__ import annotations

import numpy as np

from policies.routing import Route
from policies.routing.error_budget import ErrorBudget, MissWindow
from policies.routing.slo_aware import SloAware
from policies.state import BurstState, LiveState, ModelStats, RouteRequest, VmState
from policies.vm_factor import learn_table

SLO_MS = 300.0
CURVE = ((1, 12.0), (2, 18.0), (4, 30.0), (8, 55.0))  # the reference profile's batches


def answers(rng: np.random.Generator, n: int = 3000):
    """Raw p99 predictions and observed/raw ratios: answers mostly well under the p99
    prediction (median ~0.8 of it), 1 % up to 1.1x over."""
    raw = np.exp(rng.uniform(np.log(15.0), np.log(400.0), n))
    ratios = rng.uniform(0.6, 1.0, n)
    ratios[rng.random(n) < 0.01] = 1.1
    return raw, ratios


def stats(answered: int, missed: int) -> ModelStats:
    raw, ratios = answers(np.random.default_rng(0))
    return ModelStats(
        vm_service_ms_by_batch=CURVE,
        slo_ms=SLO_MS,
        burst_predicted_ms=150.0,
        vm_prediction_factors=learn_table(raw, ratios, SLO_MS),
        vm_budget_factors=learn_table(raw, ratios, SLO_MS, 0.5),
        slo_answered=answered,
        slo_missed=missed,
    )


def route(per: tuple[int, ...], model: ModelStats) -> Route:
    vm = VmState(len(per), 0, sum(per), 8, len(per), per)
    burst = BurstState(warm_instances=100, free_concurrency=100)
    live = LiveState(0.0, vm, True, burst, {"m": model})
    return SloAware().route(RouteRequest("t", "m", 1, SLO_MS), live).route


def test_a_queue_that_misses_at_p99_but_meets_at_the_median_stays_while_the_budget_has_room():
    deep = (40,)  # 5 full batches ahead: ~300 ms predicted at p99, ~240 ms at the median
    assert route(deep, stats(0, 0)) is Route.BURST  # nothing measured yet: protect p99
    assert route(deep, stats(20_000, 20)) is Route.VM  # 0.1 % missed of a 1 % budget
    assert route(deep, stats(20_000, 190)) is Route.BURST  # 0.95 %: back to p99 protection
    assert route((80,), stats(20_000, 20)) is Route.BURST  # misses at the median too


def test_the_quantile_returns_to_the_target_as_misses_approach_the_budget():
    budget = ErrorBudget(quantile=0.5, spend=0.5)
    assert budget.vm_quantile(0.99, 500, 0) == 0.99  # too few answers to trust a rate
    assert budget.vm_quantile(0.99, 10_000, 50) == 0.5
    middle = budget.vm_quantile(0.99, 10_000, 75)
    assert 0.5 < middle < 0.99
    assert budget.vm_quantile(0.99, 10_000, 100) == 0.99
    assert ErrorBudget(quantile=0.99).vm_quantile(0.99, 10_000, 0) == 0.99  # off


def test_the_miss_window_forgets_what_is_older_than_it():
    window = MissWindow(window_s=60.0)
    window.add(0.0, 100, 5)
    window.add(30.5, 50, 1)
    assert window.counts(59.0) == (150, 6)
    assert window.counts(61.0) == (50, 1)
    assert window.counts(200.0) == (0, 0)
