"""The interactive bound keeps a VM's billing minimum where it outlasts the boot: never above a
brute force of the real problem (every VM's on/off pattern billed with its minimum, queueing
across bins with shared capacity, the SLO's late allowance), and higher than the carry bound
on a short burst that a fast-booting VM serves for less than its minimum."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from ops.sim.optimum import combined_bound
from ops.sim.optimum_carry import CarryProblem, carry_bound
from ops.sim.optimum_minbill import minbill_dp
from tests.ops.test_optimum_carry import least_spill_cost


def billing(patterns, vm, boot, min_billed):
    """What the VMs' on/off patterns cost, each up interval billed ``max(boot + up, min)``
    (an interval from bin 0 is a VM already up: no boot, the minimum still billed)."""
    total = 0.0
    for p in patterns:
        t = 0
        while t < len(p):
            if not p[t]:
                t += 1
                continue
            s = t
            while t < len(p) and p[t]:
                t += 1
            b = 0.0 if s == 0 else boot
            total += vm * max(b + (t - s), min_billed)
    return total


def brute(d, cap, vm, fn, boot, slo, min_billed, vms=2, free_late=0):
    bins = len(d)
    fleet: dict[tuple, float] = {}  # VMs up per bin -> the cheapest billing of it
    for pats in itertools.product(itertools.product((0, 1), repeat=bins), repeat=vms):
        ns = tuple(sum(col) for col in zip(*pats, strict=True))
        fleet[ns] = min(fleet.get(ns, math.inf), billing(pats, vm, boot, min_billed))
    return min(
        fixed + least_spill_cost(d, ns, cap, fn, slo, free_late) for ns, fixed in fleet.items()
    )


@pytest.mark.parametrize("seed", range(3))
def test_never_above_a_brute_force_of_the_real_problem(seed):
    rng = np.random.default_rng(seed)
    for _ in range(8):
        # bursts between idle bins, where a started VM may owe its minimum
        d = np.append(rng.integers(0, 7, size=4) * (rng.random(4) < 0.6), 0).astype(float)
        cap, fn = 3.0, float(rng.choice([0.2, 1.2, 3.0]))
        boot, slo = float(rng.choice([0.0, 1.0])), float(rng.choice([0.0, 0.34, 0.7]))
        min_billed = boot + float(rng.choice([0.0, 2.0, 3.0, 4.0]))
        free = int(rng.integers(0, 3))
        pr = CarryProblem(d, 1.0, cap, 1.0, fn, boot, slo)
        got = combined_bound(pr, min_billed, free)["cost_usd"]
        want = brute(list(d), cap, 1.0, fn, boot, slo, min_billed, free_late=free)
        assert got <= want + 1e-9


def test_a_short_burst_on_a_fast_boot_owes_the_minimum():
    """A 1-bin burst two VMs serve, functions dear; booting takes a bin, the minimum is 5. The
    carry bound bills each VM its boot and one bin (4); started, they owe 5 each, and the
    cheapest relaxed fleet is two VMs already up before the first bin (4 bins each: 8)."""
    d = np.array([0.0, 0.0, 0.0, 6.0, 0.0, 0.0, 0.0, 0.0])
    pr = CarryProblem(d, 1.0, 3.0, 1.0, 10.0, 1.0, 0.0)
    assert carry_bound(pr, 0.0).cost_usd == pytest.approx(4.0)
    assert minbill_dp(pr, 5.0) == pytest.approx(8.0)
    got = combined_bound(pr, 5.0, 0.0)
    assert got["cost_usd"] == pytest.approx(8.0) and got["bound"] == "minimum"
    # its parts are the carry schedule's: two starts, each billed its boot (in ``vm_hours``)
    assert got["boots_s"] == pytest.approx(2.0) and got["vm_bins"] == pytest.approx(2.0)
    assert brute(list(d), 3.0, 1.0, 10.0, 1.0, 0.0, 5.0) == pytest.approx(10.0)


def test_without_a_minimum_beyond_the_boot_it_is_the_carry_bound():
    rng = np.random.default_rng(5)
    d = rng.poisson(rng.choice([40.0, 160.0, 300.0], size=200)).astype(float)
    pr = CarryProblem(d, 1.0, 145.0, 0.17 / 3600, 3.9e-6, 60.0, 0.3)
    assert combined_bound(pr, 60.0, 20.0)["cost_usd"] == pytest.approx(
        carry_bound(pr, 20.0).cost_usd
    )
