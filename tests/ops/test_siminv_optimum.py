"""The offline optimum is a lower bound on random small traces (issue 10, item 3): no preset and
no fixed fleet schedule that meets the SLO it assumes (99 %) costs less, with the reference
profile and with random deployments (boot, SLO, function times, billing minimum, VM price).
Seeds are fixed so a failure reproduces: the trace, profile and prices are named in it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ops.sim import SimProfile, simulate
from ops.sim.optimum_schedule import run_schedule
from ops.trace_synth import flash_crowd, mmpp, steady
from ops.traces import Trace
from policies.costs import PriceTable

PRESETS = ("vm-peak", "vm-reactive", "burst-only", "threshold", "knative", "slo-aware")
TARGET = 0.99  # the attainment the optimum assumes (optimum_result's slo_percentile)


def trace_of(name: str, t, tenants: int = 1, seed: int = 0) -> Trace:
    t = np.sort(np.asarray(t, dtype=np.float64))
    t = t - t[0]
    idx = np.random.default_rng(seed).integers(0, tenants, t.size).astype(np.int32)
    names = tuple(f"tenant{k}" for k in range(tenants))
    return Trace(name, t, np.zeros(t.size, np.int32), idx, ("resnet18",), names)


def random_trace(seed: int) -> Trace:
    """One of: a single request, a burst at t=0, a burst in the last second, a sparse trickle
    (billing minimum dominates), a huge rate, MMPP, a flash crowd; 1-3 tenants."""
    rng = np.random.default_rng(seed)
    kind = seed % 7
    if kind == 0:
        t = [0.0]
    elif kind == 1:
        t = np.r_[np.zeros(int(rng.integers(20, 300))), rng.uniform(0, 40, 20)]
    elif kind == 2:
        t = np.r_[rng.uniform(0, 20, 20), 20 + rng.uniform(0, 1, int(rng.integers(50, 500)))]
    elif kind == 3:
        t = np.cumsum(rng.exponential(float(rng.uniform(5, 90)), int(rng.integers(2, 30))))
    elif kind == 4:
        t = steady(float(rng.integers(2, 10)), float(rng.uniform(300, 2000)), seed)
    elif kind == 5:
        t = mmpp(float(rng.integers(60, 240)), 2.0, float(rng.uniform(30, 250)), 30.0, 8.0, seed)
    else:
        t = flash_crowd(float(rng.integers(60, 200)), 3.0, 12.0, 20.0, 5.0, 20.0, 30.0, seed)
    return trace_of(f"random{seed}", t, int(rng.integers(1, 4)), seed)


def random_deployment(seed: int) -> tuple[SimProfile, PriceTable]:
    rng = np.random.default_rng(10_000 + seed)
    profile = SimProfile.reference().with_overrides(
        vm_boot_s=float(rng.choice([0.0, 2.0, 10.0, 60.0, 180.0])),
        slo_ms=float(rng.choice([120.0, 170.0, 300.0, 1000.0, 3000.0])),
        burst_p50_ms=float(rng.choice([50.0, 110.0, 250.0])),
        cold_start_ms=float(rng.choice([5.0, 900.0])),
    )
    prices = PriceTable(
        vm_min_billed_s=float(rng.choice([0.0, 1.0, 60.0, 600.0])),
        vm_usd_per_hour=float(rng.choice([0.05, 0.17, 2.0, 50.0])),
    )
    return profile, prices


def random_schedules(trace: Trace, seed: int, n: int = 3) -> list[list[tuple[float, int]]]:
    rng = np.random.default_rng(20_000 + seed)
    out = []
    for _ in range(n):
        steps = [(0.0, int(rng.integers(0, 4)))]
        for _ in range(int(rng.integers(0, 4))):
            steps.append(
                (float(rng.uniform(0, max(trace.duration_s, 1.0))), int(rng.integers(0, 5)))
            )
        out.append(sorted(steps))
    return out


def assert_bound_holds(trace, profile, prices, seed: int = 0, schedules=()) -> None:
    """Every preset and schedule run that meets ``TARGET`` costs at least the optimum."""
    bound = simulate(trace, "optimum", profile, prices=prices, seed=seed).summary["cost_usd"]
    assert bound >= 0  # (the draws' slack took one below 0: -$0.0000194)
    runs = {p: simulate(trace, p, profile, prices=prices, seed=seed).summary for p in PRESETS}
    for steps in schedules:  # (fleet_oracle's fixed fleets, with slo-aware's routing)
        runs[f"schedule {steps}"] = run_schedule(trace, profile, prices, steps, seed)
    for name, s in runs.items():
        if s["slo_attainment"] >= TARGET:
            assert s["cost_usd"] >= bound * (1 - 1e-9), (
                f"{name} on {trace.name} ({len(trace)} requests), {profile.slo_ms:g} ms SLO, "
                f"boot {profile.vm_boot_s:g} s, minimum {prices.vm_min_billed_s:g} s, "
                f"VM ${prices.vm_usd_per_hour:g}/h: ${s['cost_usd']:.8f} at "
                f"{s['slo_attainment']:.4f} < optimum ${bound:.8f}"
            )


@pytest.mark.parametrize("seed", range(14))
def test_no_run_that_meets_the_slo_costs_less_than_the_optimum(seed):
    trace = random_trace(seed)
    profile, prices = random_deployment(seed)
    assert_bound_holds(trace, profile, prices, seed, random_schedules(trace, seed))


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(14, 70))
def test_no_run_that_meets_the_slo_costs_less_than_the_optimum_more(seed):
    trace = random_trace(seed)
    profile, prices = random_deployment(seed)
    assert_bound_holds(trace, profile, prices, seed, random_schedules(trace, seed))


@pytest.mark.parametrize("n", [1, 2, 5, 20, 100])
def test_functions_that_drew_short_times_do_not_beat_the_bound(n):
    """Functions cost their mean warm time in the bound, but a run draws its times: one request
    that drew 0.62 x the mean (n 1, seed 2) cost less than the "bound" at 100 % (burst-only and
    slo-aware; 25 of 60 of these runs did). The bound knows the run's draws (its seed)."""
    profile = SimProfile.reference().with_overrides(slo_ms=3000.0, cold_start_ms=1.0)
    prices = PriceTable(vm_usd_per_hour=50.0)  # functions are the cheaper path
    for seed in range(10):
        t = np.random.default_rng(seed).uniform(0, 2.0 * n, n)
        assert_bound_holds(trace_of(f"spread{n}", t), profile, prices, seed)


def test_functions_that_miss_the_slo_now_and_then_still_count_in_the_bound():
    """At a 170 ms SLO the functions' p99 (175 ms) misses it, and the bound took them as never
    on time (one VM all along, $0.0283), yet 98.5 % of their answers are on time: a VM up for
    one burst and functions for the rest met 99.2 % at $0.0052 (5.4x below the "bound")."""
    profile = SimProfile.reference().with_overrides(slo_ms=170.0, cold_start_ms=10.0)
    prices = PriceTable()
    rng = np.random.default_rng(0)
    base = rng.uniform(0, 600, 120)
    bursts = np.sort(rng.uniform(0, 590, 4))
    t = np.r_[base, *(b + rng.uniform(0, 2, 150) for b in bursts)]
    trace = trace_of("bursts", t)  # (from its first request on)
    first = float(bursts[0] - t.min())
    steps = [(0.0, 0), (max(first - 61.0, 0.0), 1), (first + 3.0, 0)]
    s = run_schedule(trace, profile, prices, steps)
    assert s["slo_attainment"] >= TARGET  # (the case: it meets the SLO)
    assert_bound_holds(trace, profile, prices, 0, [steps])


def test_the_bound_is_not_loosened_where_functions_are_always_on_time():
    """The draws' slack is small where there are many requests: the bound on 20 minutes of
    MMPP (44,000 requests) moves by under 1 % between seeds (0.7 % measured)."""
    trace = trace_of("mmpp", mmpp(1200.0, 5.0, 120.0, 60.0, 15.0, 3))
    profile, prices = SimProfile.reference(), PriceTable()
    costs = [
        simulate(trace, "optimum", profile, prices=prices, seed=s).summary["cost_usd"]
        for s in range(3)
    ]
    assert max(costs) <= min(costs) * 1.01
    assert all(math.isfinite(c) and c > 0 for c in costs)


def test_tenants_with_their_own_looser_slo_do_not_beat_the_bound():
    """Two tenants with a 2 s SLO ([[tenants]] slo_ms) under a 100 ms default: burst-only met
    theirs at 100 % for $0.0038, 0.40x the "bound" ($0.0095), which took 100 ms for all."""
    profile, prices = SimProfile.reference().with_overrides(slo_ms=100.0), PriceTable()
    rng = np.random.default_rng(1)
    bursts = (b + rng.uniform(0, 3, 200) for b in rng.uniform(0, 590, 3))
    t = np.r_[rng.uniform(0, 600, 300), *bursts]
    trace = trace_of("tenants", t, tenants=2, seed=1)
    slos = {"tenant0": 2000.0, "tenant1": 2000.0}
    bound = simulate(trace, "optimum", profile, prices=prices, slo_ms_by_tenant=slos).summary
    runs = [
        simulate(trace, p, profile, prices=prices, slo_ms_by_tenant=slos).summary for p in PRESETS
    ]
    met = [r for r in runs if r["slo_attainment"] >= TARGET]
    assert any(r["policy"] == "burst-only" for r in met)  # (the case)
    assert all(r["cost_usd"] >= bound["cost_usd"] for r in met)
    assert bound["slo_ms"] == 2000.0  # the loosest tenant's: a relaxation, still a bound


def test_the_bound_is_never_below_zero():
    """197 requests at t=0 and 20 over a minute, functions on time 64 % of the time (120 ms
    SLO): the draws' slack took every bound below 0 (-$0.0000194, "x optimum" < 0)."""
    rng = np.random.default_rng(9)
    trace = trace_of("burst0", np.r_[np.zeros(int(rng.integers(50, 400))), rng.uniform(0, 60, 20)])
    profile = SimProfile.reference().with_overrides(
        slo_ms=120.0, vm_boot_s=60.0, cold_start_ms=100.0
    )
    prices = PriceTable(vm_min_billed_s=1.0, vm_usd_per_hour=0.05)
    got = simulate(trace, "optimum", profile, prices=prices, seed=9).summary
    assert got["cost_usd"] >= 0 and got["cost_per_1k_usd"] >= 0


@pytest.mark.parametrize("seed", [12, 26, 27])
def test_with_async_tenants_no_run_that_meets_the_slo_costs_less(seed):
    """Half the requests an async tenant's (deadline 5 s to 10 min): the async bound priced
    functions at their mean too, and burst-only came in under it (seed 27: $0.004557 at 100 %
    below $0.004603)."""
    from ops.sim import AsyncSetup

    base = random_trace(seed)
    rng = np.random.default_rng(seed)
    tenant = rng.integers(0, 2, len(base)).astype(np.int32)
    trace = Trace(base.name, base.arrivals_s, base.model_idx, tenant, base.models, ("i", "a"))
    profile, prices = random_deployment(seed)
    setup = AsyncSetup({"a": float(rng.choice([5.0, 60.0, 600.0]))})
    bound = simulate(trace, "optimum", profile, prices=prices, async_setup=setup).summary
    for name in PRESETS:
        s = simulate(trace, name, profile, prices=prices, async_setup=setup).summary
        if s["slo_attainment"] >= TARGET:
            assert s["cost_usd"] >= bound["cost_usd"] * (1 - 1e-9), name


def test_with_async_tenants_the_bound_lets_the_percentile_be_late():
    """An interactive base one VM carries (60/s, 100 ms SLO: functions never on time), a 1 s
    spike of 200 and an async tenant: one VM all along met 99.2 % for $0.02833 where the async
    bound, which served every request on time, said $0.03086 (a second VM for the spike)."""
    from ops.sim import AsyncSetup

    profile = SimProfile.reference().with_overrides(slo_ms=100.0, vm_boot_s=60.0)
    rng = np.random.default_rng(0)
    base, spike = rng.uniform(0, 600, 36_000), 300 + rng.uniform(0, 1, 200)
    t = np.r_[base, spike, rng.uniform(0, 600, 300)]
    tenant = np.r_[np.zeros(base.size + spike.size), np.ones(300)].astype(np.int32)
    order = np.argsort(t)
    z = np.zeros(t.size, np.int32)
    trace = Trace("spike", t[order] - t.min(), z, tenant[order], ("resnet18",), ("i", "a"))
    setup, prices = AsyncSetup({"a": 60.0}), PriceTable()
    one = {f"autoscaling.{k}": 1 for k in ("replicas", "min_replicas", "max_replicas")}
    run = simulate(trace, "vm-peak", profile, prices=prices, params=one, async_setup=setup)
    assert run.summary["slo_attainment"] >= TARGET  # (the case)
    bound = simulate(trace, "optimum", profile, prices=prices, async_setup=setup).summary
    assert run.summary["cost_usd"] >= bound["cost_usd"] > 0
