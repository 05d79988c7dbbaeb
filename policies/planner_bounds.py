"""Bounds for ``policies.planner``'s exact searches: lower bounds on what completing a partial
plan adds, and complete plans found by Lagrangian backward passes (incumbents). Pure.

``by_start`` maps a position to its feasible candidates as ``(candidate, estimate, master
bytes, worker bytes)`` (``planner._prepare``)."""

from __future__ import annotations

import math
from dataclasses import dataclass

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


@dataclass(frozen=True)
class Duals:
    """Lagrangian multipliers, one column each: ``c`` on the cost, ``w`` on the mean, ``a`` on
    master bytes and ``b`` on worker bytes; ``g[p]`` the least c cost + w mean + a master + b
    worker bytes of any rest from position p (inf where none exists)."""

    c: np.ndarray
    w: np.ndarray
    a: np.ndarray
    b: np.ndarray
    g: np.ndarray

    def part(self, cols: np.ndarray) -> "Duals":
        return Duals(self.c[cols], self.w[cols], self.a[cols], self.b[cols], self.g[:, cols])


def _memory_weights(by_start, weights: list[float]) -> list[tuple[float, float]]:
    """(master, worker) byte weights: none, each alone and both alike (resources no path can
    exhaust are not tracked: their bytes are all 0)."""
    tracked_m = any(mb for cs in by_start.values() for _, _, mb, _ in cs)
    tracked_w = any(wb for cs in by_start.values() for _, _, _, wb in cs)
    out = [(0.0, 0.0)]
    out += [(u, 0.0) for u in weights] if tracked_m else []
    out += [(0.0, u) for u in weights] if tracked_w else []
    out += [(u, u) for u in weights] if tracked_m and tracked_w else []
    return out


def _duals(by_start, end: int, limits, fixed: Estimate, z: float, slo_ms: float):
    """Lagrangian passes: the cost duals and the mean duals with their per-position values,
    and the best incumbent.

    Each cost dual gives G[p] = least (cost + w * mean + a * master + b * worker bytes) of any
    rest from p, so a rest that keeps mean_rest <= M, master bytes <= L_m and worker bytes
    <= L_w costs at least G[p] - w M - a L_m - b L_w (a valid lower bound). Each mean dual
    gives H[p] = least (mean + a * master + b * worker bytes): a rest within the memory left
    takes at least H[p] - a L_m - b L_w. Their paths that meet the SLO (and the memory limits)
    are complete plans: incumbents. The master's and the workers' bytes are weighed apart:
    splitting a stage moves its weights from the master to a worker, so a weight on their sum
    could not tell a plan that fills the master from one that spreads it (ResNet-50 in 512 MB
    x 2, cost: 4392 labels at one position, 14 with them apart)."""
    means = [0.0] + [10.0 ** (e / 2.0) for e in range(-26, -5)]
    cost_duals = [
        (1.0, w, a, b)
        for a, b in _memory_weights(by_start, [10.0**-e for e in range(11, 16)])
        for w in means
    ]
    mean_duals = _mean_multipliers(by_start)
    every = cost_duals + mean_duals
    cw, w_of, a_of, b_of = (np.array([t[i] for t in every]) for i in range(4))
    g, pick = _lagrange(by_start, end, cw, w_of, a_of, b_of)
    incumbent = math.inf
    for d in range(len(every)):
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
    duals = Duals(cw, w_of, a_of, b_of, g)
    n = len(cost_duals)
    return duals.part(np.arange(n)), duals.part(np.arange(n, len(every))), incumbent * (1 + 1e-9)


def _mean_multipliers(by_start) -> list[tuple[float, float, float, float]]:
    weights = [10.0 ** (-e / 2.0) for e in range(10, 21)]  # ms per byte
    return [(0.0, 1.0, a, b) for a, b in _memory_weights(by_start, weights)]


def _lagrange(by_start, end: int, c: np.ndarray, w: np.ndarray, a: np.ndarray, b: np.ndarray):
    """Backward passes minimising c cost + w mean + a master bytes + b worker bytes, for all
    the multiplier sets at once: per position and set the least value of any rest, and the
    index (in ``by_start[p]``) of the candidate that starts it (None where no rest exists)."""
    g = np.full((end + 1, len(w)), math.inf)
    g[end] = 0.0
    pick: list = [None] * (end + 1)
    for p in range(end - 1, -1, -1):
        cs = by_start.get(p, [])
        if not cs:
            continue
        cost = np.array([e.cost_usd for _, e, _, _ in cs])[:, None]
        mean = np.array([e.mean_ms for _, e, _, _ in cs])[:, None]
        mbytes = np.array([float(mb) for _, _, mb, _ in cs])[:, None]
        wbytes = np.array([float(wb) for _, _, _, wb in cs])[:, None]
        v = cost * c + mean * w[None, :] + mbytes * a[None, :] + wbytes * b[None, :]
        v = v + g[[c.end for c, _, _, _ in cs]]
        best = v.argmin(axis=0)
        g[p] = v[best, np.arange(len(w))]
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


def _lagrangian(g, slack, w_of, left_m, a_of, left_w, b_of):
    """Per label, the largest Lagrangian bound over the duals: ``g - slack w - left_m a -
    left_w b``. Where no plan fits, a dual's inf * 0 is NaN (numpy warned on stderr under a
    one-line error): such a dual bounds nothing (-inf), which keeps the bound a bound."""
    return _best(_terms(g, slack, w_of, left_m, a_of, left_w, b_of))


def _terms(g, slack, w_of, left_m, a_of, left_w, b_of) -> np.ndarray:
    """[label, dual]: ``g - slack w - left_m a - left_w b``, in place (NaN where inf * 0)."""
    with np.errstate(invalid="ignore"):
        terms = np.multiply.outer(slack, w_of)
        np.subtract(g, terms, out=terms)
        terms -= np.multiply.outer(left_m, a_of)
        terms -= np.multiply.outer(left_w, b_of)
    return terms


def _best(terms: np.ndarray) -> np.ndarray:
    best = np.fmax.reduce(terms, axis=1)  # NaN where every dual is
    best[np.isnan(best)] = -np.inf
    return best


class Bound:
    """A Lagrangian lower bound over ``duals`` on what any rest adds to a label (its cost, or
    its mean) while it stays within ``slack_of`` (the mean the rest may take; None: not
    bounded) and the memory left. ``within`` keeps the labels whose ``base_of`` plus the bound
    is at most a cap.

    Every dual alone gives a valid bound, so any subset of them prunes exactly (never a label
    that could complete to a plan under the cap); the full set is only tighter. Most labels
    fall to a handful of duals (ResNet-50 in 512 MB x 2, cost: 6 of 352 pruned all but 36 of
    the 430,000 the full set pruned), so ``within`` bounds every label with the few duals
    that pruned most so far, and a spread sample of the labels that pass with every dual, to
    learn which duals those are as the search goes (4x faster than every dual for all)."""

    HOT = 16  # duals every label is bounded with
    SAMPLE = 256  # labels per call bounded with every dual

    def __init__(self, duals: Duals, limits, base_of, slack_of=None):
        self.duals, self.limits, self.base_of, self.slack_of = duals, limits, base_of, slack_of
        self.hits = np.zeros(len(duals.w))
        self.hot = np.empty(0, dtype=int)

    def _terms(self, cols: np.ndarray, p: int, idx=slice(None)) -> np.ndarray:
        d, lim = self.duals, self.limits
        slack = self.slack_of(cols, p) if self.slack_of else np.zeros(len(cols))
        left_m = lim.master_weight_bytes - cols[:, 3]
        left_w = lim.worker_weight_bytes - cols[:, 4]
        return _terms(d.g[p, idx], slack, d.w[idx], left_m, d.a[idx], left_w, d.b[idx])

    def value(self, cols: np.ndarray, p: int) -> np.ndarray:
        """The bound itself: with the hot duals, and every dual for a sample (learning)."""
        if not len(self.hot) or len(cols) <= self.SAMPLE:
            terms = self._terms(cols, p)
            self._learn(terms)
            return _best(terms)
        out = _best(self._terms(cols, p, self.hot))
        rows = np.linspace(0, len(cols) - 1, self.SAMPLE).astype(int)
        terms = self._terms(cols[rows], p)
        self._learn(terms)
        out[rows] = np.maximum(out[rows], _best(terms))
        return out

    def _learn(self, terms: np.ndarray) -> None:
        """Count the dual that bounds each of these labels best; the hot ones: the most."""
        terms = terms.copy()
        terms[np.isnan(terms)] = -np.inf
        self.hits += np.bincount(terms.argmax(axis=1), minlength=len(self.hits))
        top = np.argsort(-self.hits, kind="stable")[: self.HOT]
        self.hot = np.sort(top[self.hits[top] > 0])

    def within(self, cols: np.ndarray, p: int, cap: float) -> np.ndarray:
        """Whether each label's base plus its bound is at most ``cap``."""
        keep = np.ones(len(cols), dtype=bool)
        if len(self.hot):
            keep = self.base_of(cols, p) + _best(self._terms(cols, p, self.hot)) <= cap
        rows = np.flatnonzero(keep)
        if len(rows) > self.SAMPLE:  # evenly spread: the order follows the keys
            rows = rows[np.linspace(0, len(rows) - 1, self.SAMPLE).astype(int)]
        terms = self._terms(cols[rows], p)
        out = self.base_of(cols[rows], p) + _best(terms) > cap
        if out.any():  # learn which duals prune what the hot ones let through
            self._learn(terms[out])
        keep[rows[out]] = False
        return keep
