"""The offline optimum: a hindsight lower bound on the cost of serving a trace within its SLO.

Relaxations, each of which can only lower the cost (so it is a bound, not a schedule to copy):
- demand is fluid per bin (1 s, coarser for very long traces, and at least the SLO:
  ``covering_slo``; a VM's up interval rounded out to whole bins is credited the rounding);
- a VM serves up to its full-batch capacity whenever one full batch meets the SLO;
- functions are always warm when used (arrivals are known) and cost their mean warm billed
  duration less what the run's draws save (``optimum_draws``);
- work may wait in the fleet's queue up to the SLO, so a bin's last ``slo`` of arrivals may be
  served in the next bin, and the SLO's percentile lets ``1 - p`` of the requests be late
  (``optimum_carry``: a DP over VMs up and requests carried, the late allowance priced by a
  multiplier);
- every request on time costs at least its cheaper of a function and a VM's full-batch share
  (``work_bound``: where VMs are busy all along, e.g. VGG-16's flash crowd, it is the highest).
Kept, because the issue asks for it: a VM is billed from launch, i.e. ``boot_s`` before it can
serve, and for at least its billing minimum where the minimum outlasts the boot (the carry
bound relaxes that part, ``optimum_minbill`` keeps some of it; ``combined_bound`` takes the
highest). ``vm_hours`` is billed time: the bins up and every start's boot.

How loose it is: ``optimum_schedule`` simulates a feasible hindsight schedule (the per-layer DP's
VM timeline); on the bursty traces of docs/ops.md it costs 2-15 % above the bound.

The per-layer model (``solve_layers``; the async bound builds on it): with identical VMs, bins
served within themselves and a linear function price the problem splits into "layers": the
k-th VM serves ``s_k(t) = clip(r(t) - (k-1) C, 0, C)``, and layer k is on exactly when
``n(t) >= k``. Each layer is then a two-state (off/on) problem with a boot cost and a
minimum-billing tail, solved exactly by a dynamic programme, all layers at once in numpy
(``optimum_dp``). The tail makes it no bound where the minimum outlasts the boot (nested layers
overstate the minimum: ``widened_layers``), so the bounds built on it pass none; schedules
(``optimum_schedule``) and the async bound's target keep it. Async-class tenants' requests may wait until their deadline, so their work can
fill idle VM time: with them the bound is a Lagrangian one (``optimum_async``).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from .optimum_async import Economics, async_deadlines
from .optimum_async_late import async_late_bound
from .optimum_carry import CarryProblem, affordable, carry_bound, covering_slo
from .optimum_dp import min_billing_tail, solve
from .optimum_draws import DrawSlack, spill_usd
from .optimum_minbill import minbill_dp, young_bins
from .result import SimResult, Timeline


def replica_capacity_per_s(profile) -> float:
    """Rows per second at the largest batch whose service time alone meets the SLO."""
    best = 0.0
    for b in range(1, profile.vm_max_batch_size + 1):
        ms = profile.vm_service_ms(b) + profile.gateway_overhead_ms
        if ms <= profile.slo_ms:
            best = max(best, b / profile.vm_service_ms(b) * 1000.0)
    return best


def function_cost_per_request(profile, prices, check_slo: bool = True) -> tuple[float, float]:
    """(usd, gb_s) of one warm burst request at its mean billed duration; inf if the burst
    path cannot meet the SLO at its percentile (unless ``check_slo`` is off: async work)."""
    if check_slo and profile.burst_quantile_ms(0.99) + profile.gateway_overhead_ms > profile.slo_ms:
        return math.inf, 0.0
    mean_ms = profile.burst_billed_ms * math.exp(profile.burst_sigma**2 / 2)
    gb_s = mean_ms / 1000.0 * profile.burst_memory_mb / 1024.0
    puts, gets = profile.burst_store_ops
    usd = (
        gb_s * prices.fn_usd_per_gb_s
        + profile.burst_instances * prices.fn_usd_per_request
        + puts * prices.store_put_usd
        + gets * prices.store_get_usd
    )
    return usd, gb_s


def solve_layers(
    demand: np.ndarray,
    bin_s: float,
    capacity: float,
    vm_usd_per_s: float,
    fn_usd: float,
    boot_s: float,
    min_billed_s: float,
    initial_usd: float = 0.0,
) -> dict:
    """Exact DP per layer. ``demand`` is requests per bin. Returns cost and its parts
    (``initial_usd``: a layer up before the first bin, ``optimum_dp.solve``'s)."""
    per_bin_cap = capacity * bin_s
    if per_bin_cap <= 0:
        if not np.isfinite(fn_usd):
            raise ValueError("neither VMs nor functions can meet the SLO with this profile")
        total = float(demand.sum())
        return {
            "cost_usd": total * fn_usd,
            "vm_bins": 0.0,
            "fn_requests": total,
            "layers": 0,
            "boots_s": 0.0,
        }
    served = layer_shares(demand, per_bin_cap)
    m, tail = min_billing_tail(vm_usd_per_s, boot_s, min_billed_s, bin_s)
    on_usd = np.full(served.shape, vm_usd_per_s * bin_s)
    sol = solve(on_usd, fn_usd_of(served, fn_usd), vm_usd_per_s * boot_s, tail, None, initial_usd)
    return {
        "cost_usd": sol.cost_usd,
        "vm_bins": float(sol.on.sum()),
        "fn_requests": float(served[~sol.on].sum()),
        "layers": served.shape[0],
        "boots_s": boot_s * float((sol.on[:, 1:] & ~sol.on[:, :-1]).sum()),
    }


def layer_shares(demand: np.ndarray, per_bin_cap: float) -> np.ndarray:
    """(layers, bins): what the k-th VM serves of each bin's demand, ``clip(d - k C, 0, C)``."""
    layers = max(1, math.ceil(float(demand.max(initial=0.0)) / per_bin_cap))
    k = np.arange(layers)[:, None]
    return np.clip(demand[None, :] - k * per_bin_cap, 0, per_bin_cap)


def fn_usd_of(served: np.ndarray, fn_usd: float) -> np.ndarray:
    """The functions' bill for each layer's share when the layer is off (inf: they cannot)."""
    if np.isfinite(fn_usd):
        return served * fn_usd
    return np.where(served > 0, math.inf, 0.0)


FLEET_TICK_S = 1.0  # the engine's control tick (``tick_s``): how often the fleet may change


def interactive_bound(trace, bin_s, profile, prices, capacity, spill, allowance, slack=None):
    """``combined_bound`` for the trace's bins (``late``: requests it lets miss; ``spill``: an
    on-time answer on functions, ``optimum_draws.spill_usd``; ``slack``: the run's draws'
    ``DrawSlack``). Bins coarser than the fleet's changes (the engine's 1 s tick) round a VM's
    up interval out to whole bins and are credited that (``CarryProblem.edge_s``)."""
    problem = CarryProblem(
        trace.counts(bin_s).astype(np.float64),
        bin_s,
        capacity,
        prices.vm_usd_per_hour / 3600.0,
        spill,
        profile.vm_boot_s,
        profile.slo_ms / 1000.0,
        max(bin_s - FLEET_TICK_S, 0.0),
    )
    return combined_bound(problem, prices.vm_min_billed_s, allowance, slack)


# the billing-minimum DP's work: bins x (VMs + 1)^3 x young bins (an hour, 5 VMs, 50 bins: 4e7)
MINBILL_CELLS = 3e8


def combined_bound(pr: CarryProblem, min_billed_s: float, allowance: float, slack=None) -> dict:
    """The highest of four valid bounds, as ``solve_layers``' dict, ``bound`` naming it and
    ``bin_s`` its bins. Each is at most the cost of every schedule that meets the SLO, so the
    highest one is too: ``optimum_carry``'s (queueing across bins exact, a start billed its
    boot only) on the finest bins its time budget affords (``affordable``), the widened
    per-layer one (``widened_layers``), the work one (``work_bound``) and, where the billing
    minimum outlasts the boot, ``optimum_minbill``'s (queueing widened, the minimum kept; with
    a 10 s boot and the 60 s minimum, Azure code x20: $0.142 carry, $0.191 with the minimum).
    Its parts (VM bins, spill) are the carry bound's schedule's where it ran. ``slack``
    (``optimum_draws.DrawSlack``) takes off each bound what a run's draws of function times
    may save below their mean at that bound's multiplier."""
    less = slack.slack_usd if slack is not None else (lambda mu: 0.0)
    pr = covering_slo(pr)
    best = {**widened_best(pr, allowance, less), "bound": "widened", "bin_s": pr.bin_s}
    work = work_bound(pr, allowance) - less(min(pr.spill_usd, _vm_per_request(pr)))
    if work > best["cost_usd"]:
        best = {**best, "cost_usd": work, "bound": "work"}
    fit = affordable(pr)
    if fit is None:
        return best
    b = carry_bound(fit, allowance)
    mu = b.late_usd_per_request
    late = allowance if math.isfinite(mu) else 0.0
    carry = {
        "cost_usd": b.cost_usd - less(mu),
        "vm_bins": b.vm_bins,
        "fn_requests": max(b.fn_requests - late, 0.0),
        "layers": b.layers,
        "late": late,
        "boots_s": b.starts * pr.boot_s,
        "bound": "carry",
        "bin_s": fit.bin_s,
    }
    if carry["cost_usd"] >= best["cost_usd"]:
        best = carry
    elif best["bound"] == "work":  # its parts: the carry schedule's
        best = {**carry, "cost_usd": best["cost_usd"], "bound": "work"}
    m = young_bins(fit, min_billed_s)
    if m >= 2 and fit.demand.size * (b.layers + 1) ** 3 * m <= MINBILL_CELLS:
        kept = minbill_dp(fit, min_billed_s, mu) - (mu * late if late else 0.0) - less(mu)
        if kept > best["cost_usd"]:
            best = {**best, "cost_usd": kept, "bound": "minimum"}
    return best


def work_bound(pr: CarryProblem, allowance: float) -> float:
    """Every request but the late allowance is served by functions or by a VM at full batch
    (``capacity_per_s``: the largest batch that meets the SLO), whichever costs less each."""
    each = min(_vm_per_request(pr), pr.spill_usd)
    rest = max(float(pr.demand.sum()) - allowance, 0.0)
    return rest * each if rest > 0 and math.isfinite(each) else 0.0


def _vm_per_request(pr: CarryProblem) -> float:
    return pr.vm_usd_per_s / pr.capacity_per_s if pr.capacity_per_s > 0 else math.inf


def widened_layers(pr: CarryProblem, allowance: float) -> dict:
    """A faster, looser valid bound: what bin t's arrivals get of the VMs is at most
    ``C (bin_s + slo) max(n(t), n(t+1))``, and ``m(t) = max(n(t), n(t+1))`` is each of ``n``'s
    up intervals started one bin early, so the per-layer model with that capacity and a boot one
    bin shorter costs no more than ``n``'s schedule; the allowance is taken at the spill price.
    No billing minimum beyond the boot: the layers nest the VMs' intervals (last started, first
    stopped), and a short top layer owes a minimum that a fleet stopping its oldest VM first does
    not (up 1-5 and 4-8 with a 4-bin minimum: nested 1-8 and 4-5 owe 2 bins more); the minimum is
    ``optimum_minbill``'s."""
    slack = min(pr.slo_s, pr.bin_s) / pr.bin_s
    sol = solve_layers(
        pr.demand,
        pr.bin_s,
        pr.capacity_per_s * (1.0 + slack),
        pr.vm_usd_per_s,
        pr.spill_usd,
        max(pr.boot_s - pr.bin_s - 2.0 * pr.edge_s, 0.0),
        0.0,
        float(pr.initial_usd(np.ones(1))[0]),
    )
    # the Lagrangian value at mu = the spill price (valid whatever the schedule spills)
    late = allowance if math.isfinite(pr.spill_usd) else 0.0
    return {
        **sol,
        "cost_usd": sol["cost_usd"] - late * pr.spill_usd if late else sol["cost_usd"],
        "fn_requests": max(sol["fn_requests"] - late, 0.0),
        "late": late,
    }


def widened_best(pr: CarryProblem, allowance: float, less) -> dict:
    """``widened_layers`` at the late price that bounds highest, less the draws' slack at it.
    Any price ``mu`` up to the spill price is valid (an on-time answer on functions costs at
    least ``mu``, a late one ``mu`` in the Lagrangian); the spill price alone, where functions
    are on time 1 in 7e7 ($464 an answer), took the allowance at it and went negative: ResNet-50
    at a 64 ms SLO, $0.0033 for an hour one VM must serve ($0.17)."""
    mus, mu = [pr.spill_usd], pr.vm_usd_per_s / max(pr.capacity_per_s, 1e-9)
    while math.isfinite(pr.spill_usd) and allowance > 0 and mu < pr.spill_usd and len(mus) < 16:
        mus, mu = [*mus, mu], mu * 4.0
    sols = [widened_layers(dataclasses.replace(pr, spill_usd=m), allowance) for m in mus]
    for m, sol in zip(mus, sols, strict=True):
        sol["cost_usd"] -= less(m)
    return max(sols, key=lambda sol: sol["cost_usd"])


def _economics(profile, prices, capacity: float, fn_usd: float) -> Economics:
    sizes = range(1, profile.vm_max_batch_size + 1)
    return Economics(
        capacity,
        max(b / profile.vm_service_ms(b) * 1000.0 for b in sizes),
        prices.vm_usd_per_hour / 3600.0,
        fn_usd,
        function_cost_per_request(profile, prices, check_slo=False)[0],
        profile.vm_boot_s,
        prices.vm_min_billed_s,
    )


def optimum_result(
    trace, profile, prices, async_setup=None, slo_percentile: float = 0.99, seed: int = 0
) -> SimResult:
    """The bound as a ``SimResult`` (same JSON keys as a policy run) for the runs with ``seed``
    (their function times' draws: ``optimum_draws``). With ``async_setup``, async-class
    tenants' requests may wait until their deadline (``optimum_async``)."""
    span = max(trace.duration_s, 1.0)
    bin_s = 1.0 if span <= 6 * 3600 else 5.0  # coarser bins only lower the bound further
    capacity = replica_capacity_per_s(profile)
    mean_usd, fn_gb_s = function_cost_per_request(profile, prices, check_slo=False)
    deadlines = async_deadlines(trace, async_setup)
    spill = spill_usd(profile, prices, mean_usd)
    slack = DrawSlack(profile, prices, len(trace), seed, mean_usd)
    allowance = max(1.0 - slo_percentile, 0.0) * len(trace)
    if deadlines:  # (its async work may go to functions: the draws' slack always applies)
        econ = _economics(profile, prices, capacity, spill)
        slo_s = profile.slo_ms / 1000.0
        sol = async_late_bound(trace, bin_s, deadlines, econ, allowance, slo_s, slack.slack_usd)
    else:  # (functions never on time are not in the bound: their draws save it nothing)
        slack = slack if spill < math.inf else None
        sol = interactive_bound(trace, bin_s, profile, prices, capacity, spill, allowance, slack)
    n = len(trace)
    spilled = min(int(round(sol["fn_requests"])), n)
    usd = max(sol["cost_usd"], 0.0)  # (what the draws and late requests take off: not below 0)
    counts = np.bincount(trace.tenant_idx, minlength=len(trace.tenants))
    summary = {
        "policy": "optimum",
        "trace": trace.name,
        "model": profile.model,
        "requests": n,
        "duration_s": round(trace.duration_s, 3),
        "slo_ms": profile.slo_ms,
        "slo_attainment": 1.0 - sol.get("late", 0.0) / n if n else 1.0,
        "p50_ms": None,
        "p99_ms": None,
        "cost_usd": usd,
        "cost_per_1k_usd": usd / n * 1000.0 if n else 0.0,
        # billed: the bins up and each start's boot (its boot alone was 1.21 of 1.55 VM h)
        "vm_hours": (sol["vm_bins"] * sol.get("bin_s", bin_s) + sol.get("boots_s", 0.0)) / 3600.0,
        "function_gb_s": sol["fn_requests"] * fn_gb_s,
        "cold_starts": 0,
        # (int(n - x) and round(x) lost one where x was not whole: 413 + 74 of 488)
        "requests_vm": n - spilled,
        "requests_burst": spilled,
        "rejected": 0,
        "spill_ratio": sol["fn_requests"] / n if n else 0.0,
        "bin_s": sol.get("bin_s", bin_s),
        "vm_capacity_per_s": capacity,
        "peak_vm_replicas": sol["layers"],
        "requests_queued": sol.get("async_requests", 0),
        "tenants": {
            name: {"requests": int(counts[k]), "cost_usd": usd * counts[k] / max(n, 1)}
            for k, name in enumerate(trace.tenants)
        },
    }
    return SimResult(summary, np.empty(0), np.empty(0, dtype=np.uint8), Timeline())
