"""The interactive offline bound with queueing across bins and the SLO's late allowance:
exact against a brute force of its relaxed problem, never above the per-layer model, and lower
where a fleet's queue absorbs a short overflow that the per-layer model must spill."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from ops.sim.optimum import solve_layers
from ops.sim.optimum_carry import CarryProblem, carry_bound, carry_dp


def brute(d, cap, vm, fn, boot, slo, free_late=0):
    """Every VM schedule and every whole-request carry; ``free_late`` spilled requests cost
    nothing (the SLO's allowance)."""
    bins, layers = len(d), max(1, math.ceil(max(d) / cap))
    best = math.inf
    for ns in itertools.product(range(layers + 1), repeat=bins):
        fixed = sum(ns) * vm + sum(vm * boot * max(b - a, 0) for a, b in zip(ns, ns[1:]))
        best = min(best, fixed + least_spill_cost(d, ns, cap, fn, slo, free_late))
    return best


def least_spill_cost(d, ns, cap, fn, slo, free_late=0) -> float:
    """For VMs up ``ns`` per bin: the cheapest spill over every whole-request carry into the
    next bin (up to ``SLO x capacity`` per VM), ``free_late`` spilled requests free."""
    bins, per_vm = len(d), min(slo, 1.0) * cap
    limits = [int(min(d[t], math.floor(per_vm * ns[t + 1] + 1e-9))) for t in range(bins - 1)]
    best = math.inf
    for qs in itertools.product(*[range(m + 1) for m in limits], [0]):
        spilled, prev = 0.0, 0
        for t in range(bins):
            spilled += max(prev + d[t] - qs[t] - cap * ns[t], 0.0)
            prev = qs[t]
        best = min(best, fn * max(spilled - free_late, 0.0))
    return best


@pytest.mark.parametrize("seed", range(3))
def test_the_dp_is_exact_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    for _ in range(12):
        # a trailing idle bin: work carried out of the last bin is served in it
        d = np.append(rng.integers(0, 8, size=4), 0).astype(float)
        cap, fn = float(rng.choice([2.0, 3.0, 3.5])), float(rng.choice([0.2, 0.5, 1.2]))
        boot, slo = float(rng.choice([0.0, 1.0, 3.0])), float(rng.choice([0.0, 0.34, 0.7]))
        got = carry_dp(CarryProblem(d, 1.0, cap, 1.0, fn, boot, slo)).cost_usd
        assert got == pytest.approx(brute(list(d), cap, 1.0, fn, boot, slo), abs=1e-9)


def test_without_queueing_it_is_the_per_layer_model():
    rng = np.random.default_rng(3)
    d = rng.poisson(rng.choice([40.0, 160.0, 300.0], size=300)).astype(float)
    vm, fn = 0.17 / 3600, 3.9e-6
    strict = carry_dp(CarryProblem(d, 1.0, 145.0, vm, fn, 60.0, 0.0)).cost_usd
    assert strict == pytest.approx(solve_layers(d, 1.0, 145.0, vm, fn, 60.0, 60.0)["cost_usd"])
    queued = carry_dp(CarryProblem(d, 1.0, 145.0, vm, fn, 60.0, 0.3)).cost_usd
    assert queued <= strict


def test_a_short_overflow_waits_in_the_queue_instead_of_spilling():
    """Two seconds 5 requests over a VM's capacity, then quiet: the per-layer model spills the
    10 or keeps a second VM for them; a queue of 10 is 70 ms of the VM's time, within a 300 ms
    SLO."""
    d = np.array([150.0, 150.0, 30.0, 30.0])
    per_layer = solve_layers(d, 1.0, 145.0, 1e-4, 1e-3, 60.0, 60.0)
    assert per_layer["cost_usd"] == pytest.approx(6e-4)  # the second VM for its two bins
    b = carry_dp(CarryProblem(d, 1.0, 145.0, 1e-4, 1e-3, 60.0, 0.3))
    # one VM throughout (the last bin's tail may be answered after the trace ends)
    assert b.fn_requests == 0.0 and b.cost_usd <= 4 * 1e-4 + 1e-12


def test_the_late_allowance_lowers_the_bound_and_stays_below_brute_force():
    rng = np.random.default_rng(11)
    for _ in range(10):
        d = np.append(rng.integers(0, 8, size=4), 0).astype(float)
        pr = CarryProblem(d, 1.0, 3.0, 1.0, float(rng.choice([0.3, 0.9])), 2.0, 0.34)
        free = int(rng.integers(1, 4))
        got = carry_bound(pr, free).cost_usd
        assert got <= brute(list(d), 3.0, 1.0, pr.spill_usd, 2.0, 0.34, free) + 1e-9
        assert got <= carry_dp(pr).cost_usd + 1e-12


def test_functions_that_cannot_meet_the_slo_leave_only_vms():
    d = np.array([100.0, 400.0, 100.0])
    b = carry_dp(CarryProblem(d, 1.0, 145.0, 1e-4, math.inf, 60.0, 0.3))
    assert b.fn_requests == 0.0 and b.layers == 3 and math.isfinite(b.cost_usd)


def test_long_traces_take_the_widened_layers_which_never_exceed_the_dp():
    """Past ``CARRY_DP_BINS`` bins the bound is the per-layer model with (bin + SLO) of capacity
    per up bin and a boot one bin shorter: looser, valid, seconds for a day."""
    from ops.sim.optimum import widened_layers

    rng = np.random.default_rng(4)
    for _ in range(5):
        d = rng.poisson(rng.choice([40.0, 160.0, 300.0], size=240)).astype(float)
        d = np.append(d, 0.0)  # the DP may carry the last bin's tail past the trace for free
        pr = CarryProblem(d, 1.0, 145.0, 0.17 / 3600, 3.9e-6, 60.0, 0.3)
        wide = widened_layers(pr, 0.0)["cost_usd"]
        assert wide <= carry_dp(pr).cost_usd + 1e-12
        late = widened_layers(pr, 50.0)
        assert late["cost_usd"] == pytest.approx(wide - 50 * 3.9e-6) and late["late"] == 50.0
