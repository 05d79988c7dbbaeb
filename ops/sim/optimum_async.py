"""The offline optimum with async-class tenants: their requests may wait until their deadline, so
their work can fill VM time that interactive load leaves idle. A Lagrangian lower bound.

The relaxed problem (every part of which can only lower the cost): the layer model of
``optimum`` for interactive demand, plus async work that is fluid and may be served in any bin
from its arrival's to the one its deadline ends in, on any up VM's spare capacity, or on
functions at their mean warm price (the gateway never sends it there; allowing it only lowers the
bound). An async request weighs ``C / C_max`` of an interactive one, where ``C_max`` is a VM's
throughput at its largest batch: without a latency target it may batch fully.

The coupling "async served in bin t <= spare of the VMs up in bin t" is priced with a multiplier
``pi[t] >= 0``. For any pi the relaxed problem splits into the layer DP (each up bin earns
``pi[t]`` per unit of spare) and, per async request, the cheaper of its window's least pi and the
function price; by weak duality its value is a lower bound for every pi. Projected subgradient
steps (Polyak's rule towards a feasible cost) raise the bound; the best one found is kept, so
stopping early (the time budget) still leaves a valid bound.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .optimum_dp import LayerSolution, min_billing_tail, solve


@dataclass
class AsyncDemand:
    """Async work per arrival bin, one row per deadline (in bins, the window's extra bins)."""

    window_bins: list[int]
    work: list[np.ndarray]  # interactive-request units per arrival bin


@dataclass
class BoundInputs:
    interactive: np.ndarray  # requests per bin
    per_bin_cap: float  # interactive requests one VM serves in a bin
    vm_bin_usd: float
    start_usd: float
    tail: np.ndarray
    fn_usd: float  # one interactive request on functions (inf: they cannot meet the SLO)
    fn_unit_usd: float  # one unit of async work on functions


@dataclass
class AsyncBound:
    cost_usd: float
    vm_bins: float
    fn_requests: float  # interactive requests on functions in the bound's schedule
    layers: int
    iterations: int
    trivial_usd: float  # the bound with the async work left out (pi = 0)
    starts: float = 0.0  # VM starts in the bound's schedule (each billed a boot)


def async_bound(
    inp: BoundInputs, demand: AsyncDemand, upper_usd: float, budget_s: float = 10.0
) -> AsyncBound:
    """The best Lagrangian bound found within about ``budget_s`` (at most 80 subgradient
    steps; a step is not started that would end past the budget)."""
    wmax = max(demand.window_bins, default=0)
    bins = inp.interactive.size + wmax  # VMs may run past the trace to finish async work
    inter = np.concatenate([inp.interactive, np.zeros(wmax)])
    served, weights = _layers(inter, demand, inp.per_bin_cap, wmax)
    spare = inp.per_bin_cap - served
    off_usd = (
        served * inp.fn_usd if math.isfinite(inp.fn_usd) else np.where(served > 0, math.inf, 0.0)
    )
    pi = np.zeros(bins)
    best, best_sol, trivial = -math.inf, None, None
    step, stale, t0 = 1.0, 0, time.perf_counter()
    for iterations in range(1, 81):  # noqa: B007 (the count is reported)
        sol = solve(inp.vm_bin_usd - pi[None, :] * spare, off_usd, inp.start_usd, inp.tail, weights)
        async_usd, used = _async_part(pi, demand, inp.fn_unit_usd, bins)
        value = sol.cost_usd + async_usd
        trivial = value if trivial is None else trivial
        if value > best + 1e-12 * abs(best if math.isfinite(best) else 1.0):
            best, best_sol, stale = value, sol, 0
        else:
            stale += 1
            if stale >= 4:
                step, stale = step / 2, 0
                if step < 1e-3:  # ten halvings without a better bound: converged
                    break
        cap = (weights[:, None] * sol.on * spare).sum(axis=0)
        grad = used - cap
        norm = float(grad @ grad)
        spent_s = time.perf_counter() - t0
        if spent_s * (iterations + 1) / iterations > budget_s:  # the next step would overrun
            break
        if norm <= 0 or upper_usd - best <= 1e-9 * upper_usd:
            break
        pi = np.clip(pi + step * (upper_usd - value) / norm * grad, 0.0, inp.fn_unit_usd)
    return _result(best, best_sol, served, weights, iterations, trivial)


def _layers(inter: np.ndarray, demand: AsyncDemand, per_bin_cap: float, wmax: int):
    """Interactive layers (``clip(d - k C, 0, C)``) and one empty layer standing for as many as
    async work could ever keep busy (its weight), so every schedule stays in the relaxation."""
    n_inter = math.ceil(float(inter.max(initial=0.0)) / per_bin_cap - 1e-12)
    k = np.arange(max(n_inter, 1))[:, None]
    served = np.clip(inter[None, :] - k * per_bin_cap, 0, per_bin_cap)[:n_inter]
    queued = np.zeros(inter.size)
    for work in demand.work:
        queued[: work.size] += work
    recent = np.convolve(queued, np.ones(wmax + 1))[: inter.size]  # arrived in [t - wmax, t]
    need = math.ceil(float((inter + recent).max(initial=0.0)) / per_bin_cap - 1e-12)
    extra = max(need - n_inter, 0)
    if extra:
        served = np.vstack([served, np.zeros((1, inter.size))])
    weights = np.ones(served.shape[0])
    if extra:
        weights[-1] = extra
    return served, weights


def _async_part(pi: np.ndarray, demand: AsyncDemand, fn_unit_usd: float, bins: int):
    """(cost, work per bin): each bin's async work at its window's least price, or on functions
    when that is dearer; spread evenly over the cheapest bins (a subgradient that does not pile
    work on one bin of a flat price)."""
    total, used = 0.0, np.zeros(bins)
    for w, work in zip(demand.window_bins, demand.work, strict=True):
        arrive = np.nonzero(work)[0]
        if arrive.size == 0:
            continue
        view = sliding_window_view(pi, w + 1)[arrive]  # (arrivals, w + 1)
        low = view.min(axis=1)
        total += float((work[arrive] * np.minimum(low, fn_unit_usd)).sum())
        cheapest = view <= low[:, None] * (1 + 1e-9) + 1e-18
        share = np.where(low[:, None] < fn_unit_usd, cheapest / cheapest.sum(axis=1)[:, None], 0.0)
        for offset in range(w + 1):  # arrival bins are distinct: plain fancy-index adds
            used[arrive + offset] += work[arrive] * share[:, offset]
    return total, used


def _result(best, sol: LayerSolution, served, weights, iterations, trivial) -> AsyncBound:
    return AsyncBound(
        cost_usd=float(best),
        vm_bins=float((weights[:, None] * sol.on).sum()),
        fn_requests=float((served * ~sol.on).sum()),
        layers=int(weights.sum()),
        iterations=iterations,
        trivial_usd=float(trivial),
        starts=float((weights[:, None] * (sol.on[:, 1:] & ~sol.on[:, :-1])).sum()),
    )


@dataclass(frozen=True)
class Economics:
    """What the bound needs of the profile and the prices."""

    capacity: float  # interactive requests per VM-second within the SLO (0: none)
    cap_max: float  # requests per VM-second at full batches, no latency target
    vm_usd_per_s: float
    fn_usd: float  # one interactive request on functions (inf: they miss the SLO)
    fn_async_usd: float  # one request on functions, no latency target
    boot_s: float
    min_billed_s: float


def async_deadlines(trace, async_setup) -> dict[int, float]:
    """Tenant index -> deadline (s) for the trace's async-class tenants that have requests."""
    if async_setup is None:
        return {}
    present = np.bincount(trace.tenant_idx, minlength=len(trace.tenants)) > 0
    return {
        k: float(async_setup.deadline_s_by_tenant[name])
        for k, name in enumerate(trace.tenants)
        if name in async_setup.deadline_s_by_tenant and present[k]
    }


def bound_for_trace(
    trace, bin_s: float, deadlines: dict[int, float], econ: Economics, budget_s: float = 10.0
) -> dict:
    """The bound's cost and parts (the keys of ``optimum.solve_layers``) for a trace whose
    tenants in ``deadlines`` are async."""
    nbins = int(np.floor(trace.duration_s / bin_s)) + 1
    where = (trace.arrivals_s // bin_s).astype(np.int64)
    is_async = np.isin(trace.tenant_idx, list(deadlines))
    interactive = np.bincount(where[~is_async], minlength=nbins).astype(np.float64)
    fixed_usd, fixed_fn = 0.0, 0.0
    unit = econ.capacity if econ.capacity > 0 else econ.cap_max
    if econ.capacity <= 0:  # no VM meets the SLO: interactive work is the functions' alone
        if interactive.sum() and not math.isfinite(econ.fn_usd):
            raise ValueError("neither VMs nor functions can meet the SLO with this profile")
        fixed_fn = float(interactive.sum())
        fixed_usd, interactive = fixed_fn * econ.fn_usd if fixed_fn else 0.0, interactive * 0
    by_window: dict[int, np.ndarray] = {}
    for k, deadline_s in deadlines.items():
        w = max(math.ceil(deadline_s / bin_s - 1e-9), 0)
        mine = where[trace.tenant_idx == k]
        work = np.bincount(mine, minlength=nbins) * (unit / econ.cap_max)
        by_window[w] = by_window.get(w, 0) + work
    demand = AsyncDemand(list(by_window), list(by_window.values()))
    # no billing minimum beyond the boot: nested layers would overstate it (``widened_layers``)
    _, tail = min_billing_tail(econ.vm_usd_per_s, econ.boot_s, 0.0, bin_s)
    inp = BoundInputs(
        interactive=interactive,
        per_bin_cap=unit * bin_s,
        vm_bin_usd=econ.vm_usd_per_s * bin_s,
        start_usd=econ.vm_usd_per_s * econ.boot_s,
        tail=tail,
        fn_usd=econ.fn_usd,
        fn_unit_usd=econ.fn_async_usd * econ.cap_max / unit,
    )
    bound = async_bound(inp, demand, _in_bin_cost(inp, demand, econ, bin_s), budget_s)
    return {
        "cost_usd": bound.cost_usd + fixed_usd,
        "vm_bins": bound.vm_bins,
        "fn_requests": bound.fn_requests + fixed_fn,
        "layers": bound.layers,
        "async_requests": int(is_async.sum()),
        "bound_iterations": bound.iterations,
        "boots_s": bound.starts * econ.boot_s,
    }


def _in_bin_cost(inp: BoundInputs, demand: AsyncDemand, econ: Economics, bin_s: float) -> float:
    """A feasible cost of the relaxed problem: async work served in its arrival bin as if it
    were interactive (the old bound), the target of the subgradient steps."""
    from .optimum import solve_layers

    total = inp.interactive.copy()
    for work in demand.work:
        total += work
    fn = max(inp.fn_usd, inp.fn_unit_usd)
    per_s = inp.per_bin_cap / bin_s
    return solve_layers(total, bin_s, per_s, econ.vm_usd_per_s, fn, econ.boot_s, econ.min_billed_s)[
        "cost_usd"
    ]
