"""A feasible hindsight schedule: an UPPER reference beside the offline bound (a lower one).

The bound (``optimum``) relaxes what a real fleet must do; how much those relaxations are worth
is measured by a schedule that does not relax them: the per-layer DP's VM timeline (boots and
billing minimum kept), each VM launched a boot time before its layer is first up and stopped
when it goes down, run by the simulator's engine with slo-aware routing (real batching, queues,
cold starts, spill). Its simulated cost, where it meets the SLO, is what hindsight can reach;
the gap between it and the bound is the most the bound can be loose by.

``capacity_factor`` plans the layers at a multiple of a VM's full-batch capacity (below 1: a real
VM near 100 % utilisation queues past the SLO; above 1: its queue absorbs what a fluid bin
spills); ``best_hindsight`` tries a few and keeps the cheapest that meets the SLO.
"""

from __future__ import annotations

import numpy as np

from policies.autoscaling.base import ScaleDecision, ScalerBase

from .engine import Simulation
from .optimum import function_cost_per_request, layer_shares, replica_capacity_per_s
from .optimum_dp import min_billing_tail, solve
from .presets import build_policies, preset_spec
from .setup import SimSetup

# above 1: the fluid plan spills what a real VM's queue absorbs (its SLO's worth of work)
FACTORS = (1.3, 1.2, 1.1, 1.0, 0.9, 0.8)


def layer_timeline(trace, profile, prices, capacity_factor: float = 1.0, bin_s: float = 1.0):
    """(bins,) VMs wanted (booting or up) per bin: the per-layer DP's on-pattern with each up
    interval's launch moved a boot time earlier (a layer up in bin 0 is an initial VM)."""
    demand = trace.counts(bin_s).astype(np.float64)
    per_bin_cap = replica_capacity_per_s(profile) * capacity_factor * bin_s
    fn_usd, _ = function_cost_per_request(profile, prices)
    vm_usd_per_s = prices.vm_usd_per_hour / 3600.0
    served = layer_shares(demand, per_bin_cap)
    _, tail = min_billing_tail(vm_usd_per_s, profile.vm_boot_s, prices.vm_min_billed_s, bin_s)
    off = served * fn_usd if np.isfinite(fn_usd) else np.where(served > 0, np.inf, 0.0)
    sol = solve(
        np.full(served.shape, vm_usd_per_s * bin_s), off, vm_usd_per_s * profile.vm_boot_s, tail
    )
    boot_bins = int(np.ceil(profile.vm_boot_s / bin_s - 1e-9))
    wanted = np.zeros(demand.size, dtype=np.int64)
    for on in sol.on:
        launched = on.copy()
        starts = np.nonzero(on[1:] & ~on[:-1])[0] + 1
        for s in starts:
            launched[max(s - boot_bins, 0) : s] = True
        wanted += launched
    return wanted


def timeline_steps(wanted: np.ndarray, bin_s: float = 1.0) -> list[tuple[float, int]]:
    """``fleet_oracle``'s ``t_s:replicas`` steps for a per-bin count (the first at t = 0)."""
    steps = [(0.0, int(wanted[0]) if wanted.size else 0)]
    for t in np.nonzero(np.diff(wanted))[0] + 1:
        steps.append((float(t * bin_s), int(wanted[t])))
    return steps


def run_hindsight(trace, profile, prices, capacity_factor: float = 1.0, seed: int = 0) -> dict:
    """The simulated summary of the layer timeline at ``capacity_factor``."""
    steps = timeline_steps(layer_timeline(trace, profile, prices, capacity_factor))
    s = run_schedule(trace, profile, prices, steps, seed)
    return {**s, "capacity_factor": capacity_factor}


def best_hindsight(
    trace, profile, prices, target: float = 0.99, factors=FACTORS, seed: int = 0
) -> dict:
    """The cheapest of the layer timelines at ``factors`` that meets ``target`` (else the one
    with the highest attainment), and every run's (factor, attainment, cost)."""
    runs = [run_hindsight(trace, profile, prices, f, seed) for f in factors]
    ok = [r for r in runs if r["slo_attainment"] >= target]
    best = (
        min(ok, key=lambda r: r["cost_usd"]) if ok else max(runs, key=lambda r: r["slo_attainment"])
    )
    tried = [(r["capacity_factor"], r["slo_attainment"], r["cost_usd"]) for r in runs]
    return {**best, "tried": tried}


class Scheduled(ScalerBase):
    """The fleet a schedule names at each moment, nothing else."""

    name = "scheduled"

    def __init__(self, steps: list[tuple[float, int]]):
        super().__init__(0, max(k for _, k in steps) or 1)
        self.steps = sorted(steps)
        self._i = 0

    def decide(self, state) -> ScaleDecision:
        while self._i + 1 < len(self.steps) and state.now_s >= self.steps[self._i + 1][0]:
            self._i += 1
        t_s, want = self.steps[self._i]
        return ScaleDecision(want if state.now_s >= t_s else 0, "schedule")


def run_schedule(trace, profile, prices, steps: list[tuple[float, int]], seed: int = 0) -> dict:
    """The simulated summary of a fixed fleet schedule (``t_s:replicas`` steps; a VM asked for
    serves a boot time later) with slo-aware's routing and spill; ``seed`` as a run's (the
    optimum's bound is for the draws of the same seed)."""
    spec = preset_spec("slo-aware", trace, profile)
    routing, _ = build_policies(spec, prices)
    setup = SimSetup(
        profile=profile,
        routing=routing,
        autoscaler=Scheduled(steps),
        prices=prices,
        initial_replicas=steps[0][1] if steps[0][0] <= 0 else 0,
        name="schedule",
        seed=seed,
    )
    return Simulation(trace, setup).run().summary
