"""The offline optimum is a lower bound on what the simulator charges any schedule that meets
the SLO: every preset, the optimum's own VM timeline run by the engine (``optimum_schedule``),
and every fixed fleet schedule of a tiny trace; with the reference profile and with a VM that
boots faster than its billing minimum (where the bound keeps the minimum)."""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from ops.sim import SimProfile, simulate
from ops.sim.optimum import optimum_result
from ops.sim.optimum_schedule import best_hindsight, run_schedule
from ops.traces import read_trace
from policies.costs import PriceTable

PROFILES = {
    "reference": SimProfile.reference(),
    "fast boot": dataclasses.replace(SimProfile.reference(), vm_boot_s=10.0),
}
PRESETS = ("vm-peak", "vm-reactive", "burst-only", "threshold", "slo-aware")


@pytest.mark.parametrize("name", PROFILES)
@pytest.mark.parametrize("seed", range(2))
def test_no_preset_and_no_hindsight_schedule_meets_the_slo_for_less(name, seed):
    profile, prices = PROFILES[name], PriceTable()
    trace = read_trace(
        "synth:mmpp:duration_s=600,low_rps=25,high_rps=350,mean_low_s=90,mean_high_s=12",
        seed=seed,
    )
    bound = optimum_result(trace, profile, prices).summary
    runs = [simulate(trace, p, profile, seed=seed).summary for p in PRESETS]
    runs.append(best_hindsight(trace, profile, prices, factors=(1.2, 1.0)))
    met = [r for r in runs if r["slo_attainment"] >= 0.99]
    assert met, "some schedule meets the SLO"
    for r in met:
        assert bound["cost_usd"] <= r["cost_usd"], r["policy"]


def test_no_fixed_fleet_schedule_of_a_tiny_trace_meets_the_slo_for_less():
    """Every schedule of 0-2 VMs changed every 40 s over two minutes (27), run by the engine."""
    profile, prices = PROFILES["fast boot"], PriceTable()
    trace = read_trace(
        "synth:mmpp:duration_s=120,low_rps=20,high_rps=280,mean_low_s=30,mean_high_s=10", seed=2
    )
    bound = optimum_result(trace, profile, prices).summary["cost_usd"]
    cheapest = float("inf")
    for fleet in itertools.product(range(3), repeat=3):
        steps = [(40.0 * i, k) for i, k in enumerate(fleet)]
        s = run_schedule(trace, profile, prices, steps)
        if s["slo_attainment"] >= 0.99:
            cheapest = min(cheapest, s["cost_usd"])
    assert bound <= cheapest < float("inf")
