"""Bounds for ``policies.planner``'s exact searches: lower bounds on what completing a partial
plan adds, and complete plans found by Lagrangian backward passes (incumbents). Pure.

``by_start`` maps a position to its feasible candidates as ``(candidate, estimate, master
bytes, worker bytes)`` (``planner._prepare``)."""

from __future__ import annotations

import math

import numpy as np

from policies.perf import Estimate


def _lower_bounds(by_start, end: int):
    """Per position: the least mean, variance and cost any completion adds (each alone)."""
    inf = math.inf
    mean, var, cost = [inf] * (end + 1), [inf] * (end + 1), [inf] * (end + 1)
    mean[end] = var[end] = cost[end] = 0.0
    for p in range(end - 1, -1, -1):
        for c, e, _, _ in by_start.get(p, []):
            mean[p] = min(mean[p], e.mean_ms + mean[c.end])
            var[p] = min(var[p], e.var_ms2 + var[c.end])
            cost[p] = min(cost[p], e.cost_usd + cost[c.end])
    return mean, var, cost


def _duals(
    by_start, end: int, limits, fixed: Estimate, z: float, slo_ms: float
) -> tuple[list[tuple[float, float, list[float]]], float]:
    """Lagrangian passes: (weight, memory weight, per-position values) and the best incumbent.

    Each weight w gives G_w[p] = least (cost + w * mean) of any rest from p, so a rest that keeps
    mean_rest <= M costs at least G_w[p] - w * M (a valid lower bound); their paths that meet
    the SLO (and the memory limit) are complete plans: incumbents (and a weight u on master
    bytes: a rest within the memory left costs >= ... - u * left)."""
    memory_weights = [0.0] + (
        [10.0**-e for e in range(11, 16)]
        if any(mb or wb for cs in by_start.values() for _, _, mb, wb in cs)
        else []
    )
    pairs = [
        (w, u) for u in memory_weights for w in [0.0] + [10.0 ** (e / 2.0) for e in range(-26, -5)]
    ]
    w_of, u_of = np.array([w for w, _ in pairs]), np.array([u for _, u in pairs])
    g, pick = _lagrange(by_start, end, w_of, u_of)
    incumbent = math.inf
    for d in range(len(pairs)):
        mean, var, cost, mbytes, wbytes, p = fixed.mean_ms, fixed.var_ms2, fixed.cost_usd, 0, 0, 0
        while p < end and pick[p] is not None:
            c, e, mb, wb = by_start[p][pick[p][d]]
            mean, var, cost, p = mean + e.mean_ms, var + e.var_ms2, cost + e.cost_usd, c.end
            mbytes, wbytes = mbytes + mb, wbytes + wb
        if (
            p == end
            and mbytes <= limits.master_weight_bytes
            and wbytes <= limits.worker_weight_bytes
            and mean + z * math.sqrt(var) <= slo_ms
        ):
            incumbent = min(incumbent, cost)
    duals = [(w, u, list(g[:, d])) for d, (w, u) in enumerate(pairs)]
    return duals, incumbent * (1 + 1e-9)


def _lagrange(by_start, end: int, weight: np.ndarray, memory_weight: np.ndarray):
    """Backward passes minimising cost + weight * mean + memory_weight * weight bytes, for all
    the weight pairs at once: per position and pair the least value of any rest, and the index
    (in ``by_start[p]``) of the candidate that starts it (None where no rest exists)."""
    g = np.full((end + 1, len(weight)), math.inf)
    g[end] = 0.0
    pick: list = [None] * (end + 1)
    for p in range(end - 1, -1, -1):
        cs = by_start.get(p, [])
        if not cs:
            continue
        cost = np.array([e.cost_usd for _, e, _, _ in cs])[:, None]
        mean = np.array([e.mean_ms for _, e, _, _ in cs])[:, None]
        nbytes = np.array([float(mb + wb) for _, _, mb, wb in cs])[:, None]
        v = cost + mean * weight[None, :] + nbytes * memory_weight[None, :]
        v = v + g[[c.end for c, _, _, _ in cs]]
        best = v.argmin(axis=0)
        g[p] = v[best, np.arange(len(weight))]
        if np.isfinite(g[p]).any():
            pick[p] = best
    return g, pick


def _fastest_fitting(by_start, end: int, limits, fixed_mean_ms: float) -> float:
    """The least mean of the plans that minimise mean + u * weight bytes for a range of u and
    fit the limits (infinity if none does): an upper bound on the optimum."""
    best = math.inf
    tracked = any(mb or wb for cs in by_start.values() for _, _, mb, wb in cs)
    for u in [0.0] + ([10.0**-e for e in range(4, 12)] if tracked else []):
        g = [math.inf] * (end + 1)
        pick: list = [None] * (end + 1)
        g[end] = 0.0
        for p in range(end - 1, -1, -1):
            for c, e, mb, wb in by_start.get(p, []):
                v = e.mean_ms + u * (mb + wb) + g[c.end]
                if v < g[p]:
                    g[p], pick[p] = v, (c, e, mb, wb)
        mean, mbytes, wbytes, p = fixed_mean_ms, 0, 0, 0
        while p < end and pick[p] is not None:
            c, e, mb, wb = pick[p]
            mean, mbytes, wbytes, p = mean + e.mean_ms, mbytes + mb, wbytes + wb, c.end
        if (
            p == end
            and mbytes <= limits.master_weight_bytes
            and wbytes <= limits.worker_weight_bytes
        ):
            best = min(best, mean)
    return best


def _front(keys: np.ndarray, block: int = 256, recent: int = 128) -> np.ndarray:
    """Row indices of the Pareto front of ``keys`` (rows no other row is at most on every key;
    of equal ones, the first). Sorted lexicographically a row can only be dominated by an
    earlier one, and a row dominated by a dominated row is dominated by what dominates that
    (<= is transitive): so a row is kept iff no earlier row at all is at most it, which is
    checked a block at a time: against the ``recent`` rows kept last (nearest in order: they
    dominate most of what is dominated), the rest against every kept row, and what is left
    among itself (by transitivity, a row only a dominated block row is at most is dominated by
    a kept row too). ResNet-50 in 512 MB x 8, cheapest plan: 1.7 s of fronts, now 0.75."""
    order = np.lexsort(keys.T[::-1])
    rest = keys[order, 1:]
    kept_cols = [np.empty(0) for _ in range(rest.shape[1])]  # the kept rows, by key
    kept: list[np.ndarray] = []
    for start in range(0, len(order), block):
        blk = rest[start : start + block]
        live = np.arange(len(blk))
        if len(kept_cols[0]) > 2 * recent:
            live = live[~_at_most([col[-recent:] for col in kept_cols], blk).any(axis=1)]
        if len(kept_cols[0]) and len(live):
            live = live[~_at_most(kept_cols, blk[live]).any(axis=1)]
        if len(live) > 1:
            inner = _at_most(blk[live].T, blk[live])  # [j, i]: live row i <= live row j
            live = live[~np.tril(inner, -1).any(axis=1)]
        kept_cols = [np.concatenate([col, blk[live, k]]) for k, col in enumerate(kept_cols)]
        kept.append(order[start : start + block][live])
    return np.concatenate(kept)


def _at_most(cols, rows: np.ndarray) -> np.ndarray:
    """[j, i]: every key of the i-th of ``cols`` (keys by column) is at most row j's; one key
    at a time, in place (no rows x cols x keys array: 3-4x faster on VGG-16's fronts)."""
    out = cols[0][None, :] <= rows[:, 0:1]
    for k in range(1, rows.shape[1]):
        out &= cols[k][None, :] <= rows[:, k : k + 1]
    return out


def _lagrangian(g, slack, w_of, left, u_of):
    """Per label, the largest Lagrangian bound over the duals: ``g - slack w - left u``. Where
    no plan fits, a dual's inf * 0 is NaN (numpy warned on stderr under a one-line error):
    such a dual bounds nothing (-inf), which keeps the bound a bound."""
    with np.errstate(invalid="ignore"):  # g - slack w - left u, in place (labels x duals)
        terms = np.multiply.outer(slack, w_of)
        np.subtract(g, terms, out=terms)
        terms -= np.multiply.outer(left, u_of)
    best = np.fmax.reduce(terms, axis=1)  # NaN where every dual is
    best[np.isnan(best)] = -np.inf
    return best
