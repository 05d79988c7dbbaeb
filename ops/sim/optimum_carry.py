"""The offline optimum's interactive bound: the whole fleet as one queue whose work may wait up
to the SLO, and the SLO's allowance of late requests priced by a multiplier.

Why not the per-layer model alone (``optimum.solve_layers``): it serves each 1 s bin's arrivals
within that bin, so a bin a few requests over ``n`` VMs' capacity must start a VM or spill, even
when the next bin is idle. A real fleet queues them: a request that arrives in the last
``slo_s`` of a bin may be answered in the next one. And a p99 SLO lets 1 % of requests be late.
Both make the per-layer value higher than the cheapest schedule that meets the SLO, so it was not
a lower bound (Azure conversation trace x20: $0.267 where this bound is $0.22).

The relaxed problem here (each part can only lower the cost):
- demand is fluid within a bin; the VMs up in bin t serve at most ``capacity x bin_s`` each in
  it, at full batches;
- of a bin's arrivals, up to ``slo_s x capacity`` per VM up in the *next* bin may be carried into
  it (work still in the queue when its SLO runs out cannot be served in time); a carried request
  is whole (the carry is an integer). This needs bins at least as long as the SLO (a longer SLO
  lets work wait two bins: ``covering_slo`` makes them so);
- functions serve any share at their mean warm price;
- a start bills ``boot_s`` (the minimum billing beyond the boot is relaxed away: nothing with
  the reference profile, whose 60 s boot covers the 60 s minimum; ``optimum.interactive_bound``
  takes the widened per-layer bound, which keeps it, where that is higher);
- a late request costs the multiplier ``mu`` and nothing else: for any ``mu >= 0`` the least cost
  minus ``mu x late allowance`` is a lower bound (weak duality); the best of a few ``mu`` is kept.

Exact dynamic programme over (VMs up, requests carried) per bin, vectorised in numpy.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CarryProblem:
    demand: np.ndarray  # requests per bin
    bin_s: float
    capacity_per_s: float  # one VM at full batches
    vm_usd_per_s: float
    spill_usd: float  # one request on functions (inf: they cannot meet the SLO)
    boot_s: float
    slo_s: float
    # bins coarser than the fleet's changes (``coarsened``): a VM's up interval may be
    # rounded out to whole bins by up to this at each end, so each start is billed that much
    # less twice and a VM up before the first bin is credited it once (a bound, not an excess)
    edge_s: float = 0.0

    def start_usd(self) -> float:
        """What a start bills: its boot, less the rounding of its interval's two ends."""
        return self.vm_usd_per_s * max(self.boot_s - 2.0 * self.edge_s, 0.0)

    def initial_usd(self, n: np.ndarray) -> np.ndarray:
        """What ``n`` VMs already up before the first bin cost there (their end's rounding)."""
        return -self.vm_usd_per_s * self.edge_s * n


@dataclass(frozen=True)
class CarryBound:
    cost_usd: float
    vm_bins: float  # VM bins up in the bound's schedule (boots not counted)
    fn_requests: float  # requests on functions (or late) in it
    layers: int
    late_usd_per_request: float  # the multiplier that gave the best bound (inf: none late)
    starts: float = 0.0  # VM starts in it (each billed a boot)


def dp_cells(pr: CarryProblem) -> float:
    """The DP's work: VM counts x carried requests, summed over the bins (a bin's carry is at
    most its arrivals, so quiet bins are narrow: its time grows with it)."""
    per_vm = pr.capacity_per_s * pr.bin_s
    if per_vm <= 0:
        return 0.0
    layers = max(1, math.ceil(float(pr.demand.max(initial=0.0)) / per_vm))
    q_max = math.floor(min(pr.slo_s, pr.bin_s) * pr.capacity_per_s * layers + 1e-9)
    carried = np.minimum(np.floor(pr.demand + 1e-9), q_max) + 1
    return float((layers + 1) * carried.sum())


PROBES = 3  # multipliers ``carry_bound`` tries after the first
BIN_WORK = 700  # a bin's fixed numpy work in cells (~86 us against ~125 ns a cell)


def dp_work(pr: CarryProblem) -> float:
    """``carry_bound``'s time in cell-equivalents: its DP runs, each bins x a bin's fixed work
    plus its cells (a day of 10 M requests in 5 s bins: 1.1e8, 14 s)."""
    return (PROBES + 1) * (pr.demand.size * BIN_WORK + dp_cells(pr))


def carry_dp(pr: CarryProblem, late_usd: float = math.inf) -> CarryBound:
    """Least cost of the relaxed problem with late requests at ``late_usd`` each (not counting
    the allowance), and the VM bins and spilled requests of the schedule that reaches it."""
    per_vm = pr.capacity_per_s * pr.bin_s
    spill = min(pr.spill_usd, late_usd)
    if per_vm <= 0:
        if not math.isfinite(spill):
            raise ValueError("neither VMs nor functions can meet the SLO with this profile")
        total = float(pr.demand.sum())
        return CarryBound(total * spill, 0.0, total, 0, late_usd)
    layers = max(1, math.ceil(float(pr.demand.max(initial=0.0)) / per_vm))
    carry_per_vm = min(pr.slo_s, pr.bin_s) * pr.capacity_per_s
    # a bin carries out at most its own arrivals: no state is wider than the busiest bin (an
    # SLO of hours made bins of hours and a grid of VM-hours of capacity: 21 GB for 2 requests)
    busiest = int(math.floor(float(pr.demand.max(initial=0.0)) + 1e-9))
    q_max = min(int(math.floor(carry_per_vm * layers + 1e-9)), busiest)
    g = _Grid(layers, q_max)
    # carried-in work needs VMs in its bin to serve it
    fits = g.q[None, :] <= carry_per_vm * g.n[:, None] + 1e-9
    # before the first bin any fleet may already be up (as a simulation starts), nothing carried
    cost = pr.initial_usd(g.n)[:, None]
    aux = np.zeros((3,) + cost.shape)  # the path's VM bins, spilled requests and starts
    up_usd = pr.vm_usd_per_s * pr.bin_s * g.n[:, None]
    start_usd = pr.start_usd()
    for d in pr.demand.tolist():
        w_in = cost.shape[1]
        c1, k = _start_vms(g, cost, start_usd)
        c1 = np.where(fits[:, :w_in], c1 + up_usd, BIG)
        a1 = aux[:, k, g.cols[:, :w_in]]
        a1[0] += g.n[:, None]
        a1[2] += np.maximum(g.n[:, None] - k, 0)
        # only this bin's arrivals may be carried out of it: the state is as wide as they are
        w_out = min(q_max, int(math.floor(d + 1e-9))) + 1
        cost, aux = _carry_out(g, c1, a1, d - per_vm * g.n, spill, w_out)
    best = np.unravel_index(int(cost.argmin()), cost.shape)
    vm_bins, spilled, starts = (float(a[best]) for a in aux)
    return CarryBound(float(cost[best]), vm_bins, spilled, layers, late_usd, starts)


BIG = 1e30


class _Grid:
    """Index arrays of the (VMs, carried) state grid, made once per run."""

    def __init__(self, layers: int, q_max: int):
        self.n = np.arange(layers + 1, dtype=np.float64)
        self.q = np.arange(q_max + 1, dtype=np.float64)
        shape = (layers + 1, q_max + 1)
        self.rows = np.broadcast_to(np.arange(layers + 1)[:, None], shape)
        self.cols = np.broadcast_to(np.arange(q_max + 1)[None, :], shape)


def _start_vms(g: _Grid, cost: np.ndarray, start_usd: float):
    """``min over n of cost[n] + start_usd x max(n' - n, 0)`` for every ``n'`` (and the ``n``):
    keeping or stopping VMs is free (a suffix minimum over ``n >= n'``), starting them costs
    their boots (a prefix minimum of ``cost - start x n`` over ``n < n'``)."""
    top = cost.shape[0] - 1
    keep_c = np.minimum.accumulate(cost[::-1], axis=0)[::-1]
    rows = g.rows[:, : cost.shape[1]]
    keep_k = top - _running_argmin(cost[::-1], rows, 0)[::-1]
    less = cost - start_usd * g.n[:, None]
    up_c = np.minimum.accumulate(less, axis=0)
    up_k = _running_argmin(less, rows, 0)
    grow_c = np.full_like(cost, BIG)
    grow_c[1:] = up_c[:-1] + start_usd * g.n[1:, None]
    grow_k = np.zeros_like(up_k)
    grow_k[1:] = up_k[:-1]
    use_grow = grow_c < keep_c
    return np.where(use_grow, grow_c, keep_c), np.where(use_grow, grow_k, keep_k)


def _carry_out(g: _Grid, c1, a1, excess, spill_usd: float, w_out: int):
    """From (VMs, carried in) to (VMs, carried out): each VM count ``n'`` has ``excess[n']`` =
    arrivals minus what its VMs serve; carrying ``j`` out of ``i`` in spills
    ``max(i + excess - j, 0)``. Prefix minima over ``i`` (no spill) and suffix minima of
    ``cost + spill x i`` (spill) give every ``j < w_out`` at once."""
    w_in = c1.shape[1]
    rows, cols = g.rows[:, :w_out], g.cols[:, :w_in]
    pre_c = np.minimum.accumulate(c1, axis=1)
    pre_k = _running_argmin(c1, cols, 1)
    j = g.q[None, :w_out]
    # carrying j out without spilling needs i <= j - excess
    cut = np.floor(j - excess[:, None] + 1e-9).astype(np.int64)
    cut_c = np.clip(cut, 0, w_in - 1)
    cost = np.where(cut >= 0, pre_c[rows, cut_c], BIG)
    src = pre_k[rows, cut_c]
    spilled_now = 0.0
    if math.isfinite(spill_usd):
        paid = (c1 + spill_usd * g.q[None, :w_in])[:, ::-1]
        suf_c = np.minimum.accumulate(paid, axis=1)[:, ::-1]
        suf_k = w_in - 1 - _running_argmin(paid, cols, 1)[:, ::-1]
        nxt = np.clip(cut + 1, 0, w_in - 1)
        spill_c = suf_c[rows, nxt] + (excess[:, None] - j) * spill_usd
        use_spill = (cut + 1 <= w_in - 1) & (spill_c < cost)
        src = np.where(use_spill, suf_k[rows, nxt], src)
        cost = np.where(use_spill, spill_c, cost)
        spilled_now = np.where(use_spill, np.maximum(src + excess[:, None] - j, 0.0), 0.0)
    aux = a1[:, rows, src]
    aux[1] += spilled_now
    return np.minimum(cost, BIG), aux


def _running_argmin(a: np.ndarray, idx: np.ndarray, axis: int) -> np.ndarray:
    """Index of the running minimum along ``axis`` (the last index that reaches it)."""
    run = np.minimum.accumulate(a, axis=axis)
    return np.maximum.accumulate(np.where(a <= run, idx, 0), axis=axis)


def carry_bound(pr: CarryProblem, late_allowance: float, probes: int = PROBES) -> CarryBound:
    """The best bound found over a few multipliers ``mu`` for late requests (``late_allowance``
    requests may miss the SLO: ``(1 - percentile) x requests``). Every ``mu`` gives a valid bound;
    the dual is concave in ``mu`` with slope (requests spilled or late) - allowance, so a
    bisection on that slope's sign over ``[0, spill price]`` (a start's price when functions
    cannot serve) finds better ones; the best is kept."""
    if late_allowance <= 0:
        return carry_dp(pr)
    hi = pr.spill_usd if math.isfinite(pr.spill_usd) else pr.vm_usd_per_s * pr.boot_s
    best = _with_allowance(carry_dp(pr, hi), late_allowance, hi)
    lo = 0.0
    # at ``hi`` a schedule that spills at least the allowance is the best (slope >= 0)
    for _ in range(probes if best.fn_requests < late_allowance else 0):
        mu = (lo + hi) / 2
        b = carry_dp(pr, mu)
        if b.fn_requests >= late_allowance:
            lo = mu
        else:
            hi = mu
        b = _with_allowance(b, late_allowance, mu)
        best = b if b.cost_usd > best.cost_usd else best
    return best


def _with_allowance(b: CarryBound, allowance: float, mu: float) -> CarryBound:
    return CarryBound(b.cost_usd - mu * allowance, b.vm_bins, b.fn_requests, b.layers, mu, b.starts)


# the carry bound's time budget in cell-equivalents (``dp_work``: ~125 ns each on
# this 2-core host, so ~20 s at most; a day of a 10 M-request trace in 5 s bins: 1.1e8, 14 s)
CARRY_DP_WORK = 1.6e8
COARSEST = 8  # past this many times the bin, the widened layers alone


def covering_slo(pr: CarryProblem) -> CarryProblem:
    """``pr`` on the fewest whole bins that cover its SLO. The bounds' queue lets a bin's
    arrivals wait into the next bin only; with bins shorter than the SLO a real queue may wait
    two bins or more, which they would forbid (no bound: a 2.5 s SLO, one VM up all along
    serving 40 requests of one second over 2.4 s; on 1 s bins the bounds started a second)."""
    return coarsened(pr, max(1, math.ceil(pr.slo_s / pr.bin_s - 1e-9)))


def affordable(pr: CarryProblem) -> CarryProblem | None:
    """``pr`` on the finest bins (``pr``'s doubled, up to ``COARSEST`` times) whose carry DP
    fits ``CARRY_DP_WORK``: coarser bins relax the queue further (a bin's arrivals spread over
    it), so each gives a lower, still valid bound, far tighter than the widened layers'."""
    k = 1
    while k <= COARSEST:
        c = coarsened(pr, k)
        if dp_work(c) <= CARRY_DP_WORK:
            return c
        k *= 2
    return None


def coarsened(pr: CarryProblem, k: int) -> CarryProblem:
    """``pr`` with ``k`` bins summed into one; an up interval's ends round out by ``k - 1``
    bins more."""
    if k == 1:
        return pr
    d = np.append(pr.demand, np.zeros(-pr.demand.size % k)).reshape(-1, k).sum(axis=1)
    edge = pr.edge_s + (k - 1) * pr.bin_s
    return dataclasses.replace(pr, demand=d, bin_s=pr.bin_s * k, edge_s=edge)
