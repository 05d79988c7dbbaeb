"""Choosing a burst plan exactly: the fastest under a memory limit, or the cheapest meeting an SLO.

The search space: a plan is a path through the model's nodes made of stage candidates
(``policies.perf.Candidate``: a serial node, a run of spatial blocks tiled on k workers, or a
conv/linear head split k ways by output channels). ``burst.candidates`` builds them.

The model (``policies.perf``) makes every quantity the search needs additive over stages: the
latency's mean and variance, the cost, and the master's weight bytes (the serial stages' weights
share one function). Constraints (every function keeps all its weights cached):
  * the master computes leg 0 of every split stage itself (burst.forkjoin): the serial stages'
    weights and its leg-0 slices together fit the master's weight budget;
  * worker j runs leg j of every stage with more than j legs: worker 1's slices together (the
    largest: output parts are cut largest first, spatial legs all hold the same weights) fit a
    worker's weight budget;
  * cost objective: mean + z_q * sqrt(var) <= SLO at percentile q (q >= 0.5).

Both searches are label-setting dynamic programmes over node positions (Gillis's DP, with the
split per group and the boundary between groups inside the state: a label at position p is a
partial plan ending at a stage boundary there, and each extension adds one whole stage, its
transfers in and out included). Labels at a position are kept only while no other label is at
least as good: (mean, master bytes, worker bytes) for latency, and for cost (mean,
mean + z sqrt(var), cost, master bytes, worker bytes). Every extension adds the same amounts to
both labels; A's completion meets the SLO whenever B's does because mean_A <= mean_B and, for
every dv >= 0, z (sqrt(var_A + dv) - sqrt(var_B + dv)) is largest at dv = 0 when var_A > var_B
(sqrt is concave) and at most 0 otherwise. So a dominated label can never complete to a plan
better than its dominator's completion: discarding it is exact. Labels that cannot meet the SLO
even with the fastest possible rest (lower bounds from a backward pass, and Lagrangian bounds on
the time of a rest within the memory left), or that cannot beat the best complete plan found
even with the cheapest rest (Lagrangian bounds, ``policies.planner_bounds``), are discarded for
the same reason. A label whose memory left covers every completion from its position
compares as if it had exactly that much left (the extra changes no completion). The cost search
first runs a beam of itself (a few labels per position) for a good complete plan to prune with;
the beam only sets that bound. The result is optimal with respect to this model and these
candidates. Labels live in numpy arrays, one block per position, so each step is a few array
operations (ResNet-50 and VGG-16 in 512-2048 MB x 1-8 workers: under 1 s CPU either objective).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from statistics import NormalDist

import numpy as np

from policies.packing import held_bytes
from policies.perf import Candidate, NodeWork, PerfModel, PlanPrediction
from policies.planner_bounds import (
    Bound,
    _duals,
    _fastest_fitting,
    _front,
    _lower_bounds,
)
from policies.planner_transports import stage_transports, with_transports

__all__ = [
    "Objective",
    "Limits",
    "PlanChoice",
    "PlanningError",
    "latency_optimal",
    "cheapest_meeting_slo",
    "Candidate",
    "NodeWork",
    "stage_transports",
    "with_transports",
]


class Objective(str, Enum):
    LATENCY = "latency"
    COST = "cost"


class PlanningError(Exception):
    """No plan satisfies the limits (or the SLO)."""


@dataclass(frozen=True)
class Limits:
    worker_weight_bytes: int  # one worker function's: its legs of every stage together
    master_weight_bytes: int  # the master's: serial stages and its own legs together


@dataclass(frozen=True)
class PlanChoice:
    stages: tuple[Candidate, ...]
    prediction: PlanPrediction


@dataclass
class _Labels:
    """Partial plans ending at one position, as arrays: ``cols`` rows are (mean, var, cost,
    master bytes, worker bytes); each came from label ``src`` at position ``pos`` by that
    position's candidate ``cand`` (-1 for the empty plan)."""

    cols: np.ndarray
    pos: np.ndarray
    src: np.ndarray
    cand: np.ndarray


def _path(kept: list[_Labels], by_start, end: int, i: int) -> list[Candidate]:
    out: list[Candidate] = []
    p = end
    while kept[p].pos[i] >= 0:
        p, i, c = int(kept[p].pos[i]), int(kept[p].src[i]), int(kept[p].cand[i])
        out.append(by_start[p][c][0])
    return out[::-1]


def _prepare(model: PerfModel, candidates: list[Candidate], limits: Limits):
    """Per start position: feasible candidates with their estimates and the weight bytes they
    add to the master and to worker 1 (the worker with the most: it has a leg in every split
    stage, and parts are cut largest first). A resource no path can exhaust is not tracked."""
    by_start: dict[int, list] = {}
    for c in candidates:
        m, w = _resources(c)
        if (
            m > limits.master_weight_bytes
            or w > limits.worker_weight_bytes
            or c.weight_bytes > limits.worker_weight_bytes
            and c.split != "serial"
        ):
            continue
        by_start.setdefault(c.start, []).append([c, model.stage(c), m, w])
    end = _end(candidates)
    most_m, most_w = [0] * (end + 1), [0] * (end + 1)
    for p in range(end - 1, -1, -1):
        for c, _, m, w in by_start.get(p, []):
            most_m[p] = max(most_m[p], m + most_m[c.end])
            most_w[p] = max(most_w[p], w + most_w[c.end])
    track_m = most_m[0] > limits.master_weight_bytes
    track_w = most_w[0] > limits.worker_weight_bytes
    by_start = {
        p: _undominated([(c, e, m if track_m else 0, w if track_w else 0) for c, e, m, w in cs])
        for p, cs in by_start.items()
    }
    # a label at p with at least most_*[p] left has every completion fit: how much more it has
    # changes nothing, so its bytes compare as if it had exactly that much left (exact)
    floor_m = [limits.master_weight_bytes - m if track_m else 0 for m in most_m]
    floor_w = [limits.worker_weight_bytes - w if track_w else 0 for w in most_w]
    return by_start, floor_m, floor_w


def _undominated(cs: list) -> list:
    """The candidates no other with the same end and weight bytes beats or ties on mean,
    variance and cost (the first of equals stays): every label extended by a dominated one
    is dominated by the same label extended by its dominator, so dropping it is exact (a
    split's lead variants differ only in these)."""
    groups: dict[tuple, list] = {}
    for item in cs:
        c, _, m, w = item
        groups.setdefault((c.end, m, w), []).append(item)
    out = []
    for group in groups.values():
        for i, (_, e, _, _) in enumerate(group):
            if not any(
                f.mean_ms <= e.mean_ms
                and f.var_ms2 <= e.var_ms2
                and f.cost_usd <= e.cost_usd
                and (
                    j < i
                    or (f.mean_ms, f.var_ms2, f.cost_usd) != (e.mean_ms, e.var_ms2, e.cost_usd)
                )
                for j, (_, f, _, _) in enumerate(group)
                if j != i
            ):
                out.append(group[i])
    return out


MIB = 1 << 20
BEAM_WIDTH = 64  # labels per position in the incumbent-finding beam (speed only, not exactness)


def _resources(c: Candidate) -> tuple[int, int]:
    """Weight bytes (packed copies included) a stage adds to the master and to worker 1, in
    whole MiB rounded up (the model's unit: small Pareto fronts, errs on the safe side)."""

    def mib(n: int) -> int:
        return -(-n // MIB) * MIB

    if c.split == "serial":
        return mib(held_bytes(c.weight_bytes, c.master_pack_bytes, c.packed)), 0
    return (
        mib(held_bytes(c.master_weight_bytes, c.master_pack_bytes, c.packed)),
        mib(held_bytes(c.worker_weight_bytes, c.worker_pack_bytes, c.packed)),
    )


def _end(candidates: list[Candidate]) -> int:
    return max(c.end for c in candidates)


def _select(chunks: list[_Labels], p: int, keys, keep, cap=None, rank=None) -> _Labels:
    """The labels at ``p`` that ``keep`` keeps and no other is at least as good as on every
    key, all at once; with ``cap`` (a beam, not exact) the ``cap`` best by ``rank``."""
    if not chunks:
        return _Labels(np.empty((0, 5)), *(np.empty(0, int) for _ in range(3)))
    cols = np.concatenate([ch.cols for ch in chunks])
    ok = np.flatnonzero(keep(cols, p))
    if cap is not None:  # the beam: only the best few by rank are worth a front
        ok = ok[np.argsort(rank(cols[ok], p), kind="stable")[: 4 * cap]]
    idx = ok[_front(keys(cols[ok], p))] if len(ok) > 1 else ok
    if cap is not None and len(idx) > cap:
        idx = idx[np.argsort(rank(cols[idx], p), kind="stable")[:cap]]
    refs = (np.concatenate([getattr(ch, f) for ch in chunks])[idx] for f in ("pos", "src", "cand"))
    return _Labels(cols[idx], *refs)


def _search(model, by_start, end, limits, keys, keep, cap=None, rank=None) -> list[_Labels]:
    """Labels reach a position only from earlier ones, so each position's labels are all in
    when it is reached: they are filtered once, in bulk, then extended by every candidate
    there at once. Returns the kept labels of every position (the last: complete plans)."""
    fixed = model.fixed()
    root = np.array([[fixed.mean_ms, fixed.var_ms2, fixed.cost_usd, 0.0, 0.0]])
    pending: list[list[_Labels]] = [[] for _ in range(end + 1)]
    pending[0].append(_Labels(root, *(np.array([-1]) for _ in range(3))))
    kept: list[_Labels] = []
    for p in range(end + 1):
        kept.append(_select(pending[p], p, keys, keep, cap, rank))
        pending[p] = []  # done with this position: free it
        cs = by_start.get(p, [])
        if p == end or not cs or not len(kept[p].cols):
            continue
        adds = np.array([(e.mean_ms, e.var_ms2, e.cost_usd, mb, wb) for _, e, mb, wb in cs])
        ends = np.array([c.end for c, _, _, _ in cs])
        new = kept[p].cols[:, None, :] + adds[None, :, :]
        fits = (new[:, :, 3] <= limits.master_weight_bytes) & (
            new[:, :, 4] <= limits.worker_weight_bytes
        )
        li, ci = np.nonzero(fits)
        for e in np.unique(ends[ci]):
            at = ends[ci] == e
            pending[e].append(_Labels(new[li[at], ci[at]], np.full(at.sum(), p), li[at], ci[at]))
    return kept


def _bytes_keys(cols, p: int, floor_m, floor_w):
    """Master and worker bytes as compared at ``p`` (see ``_prepare``)."""
    return np.maximum(cols[:, 3], floor_m[p]), np.maximum(cols[:, 4], floor_w[p])


def latency_optimal(model: PerfModel, candidates: list[Candidate], limits: Limits) -> PlanChoice:
    """The plan with the least predicted p50 (mean) whose functions all fit ``limits``."""
    candidates = with_transports(model, candidates)
    by_start, floor_m, floor_w = _prepare(model, candidates, limits)
    end = _end(candidates)
    lb_mean, _, _ = _lower_bounds(by_start, end)
    # a label that cannot beat a complete plan already known even with the fastest rest
    # (memory ignored) is discarded: exact, and it keeps the fronts small
    incumbent = _fastest_fitting(by_start, end, limits, model.fixed().mean_ms) * (1 + 1e-9)
    kept = _search(
        model,
        by_start,
        end,
        limits,
        keys=lambda cols, p: np.column_stack([cols[:, 0], *_bytes_keys(cols, p, floor_m, floor_w)]),
        keep=lambda cols, p: cols[:, 0] + lb_mean[p] <= incumbent,
    )
    finals = kept[end].cols
    if not len(finals):
        raise PlanningError(
            "no plan fits the memory limits: allow more workers or a larger "
            "memory size per function"
        )
    best = _path(kept, by_start, end, int(np.lexsort((finals[:, 2], finals[:, 0]))[0]))
    return PlanChoice(tuple(best), model.predict(best))


def cheapest_meeting_slo(
    model: PerfModel,
    candidates: list[Candidate],
    limits: Limits,
    slo_ms: float,
    percentile: float = 0.99,
) -> PlanChoice:
    """The least-cost plan whose predicted ``percentile`` latency is at most ``slo_ms``."""
    if not 0.5 <= percentile < 1.0:
        raise PlanningError(f"percentile must be in [0.5, 1), got {percentile}")
    candidates = with_transports(model, candidates)
    z = NormalDist().inv_cdf(percentile)
    by_start, fm, fw = _prepare(model, candidates, limits)
    end = _end(candidates)
    fixed = model.fixed()
    lb_mean, lb_var, _ = _lower_bounds(by_start, end)
    cost_duals, mean_duals, incumbent = _duals(by_start, end, limits, fixed, z, slo_ms)

    def sd_at(cols, p: int):  # any rest adds at least lb_var[p]
        return np.sqrt(cols[:, 1] + lb_var[p])

    # the least any rest can cost while the plan meets the SLO, and the least time any rest
    # takes within the memory left (Lagrangian bounds)
    rest = Bound(cost_duals, limits, lambda cols, p: cols[:, 2])
    rest.slack_of = lambda cols, p: slo_ms - cols[:, 0] - z * sd_at(cols, p)
    rest_mean = Bound(mean_duals, limits, lambda cols, p: cols[:, 0] + z * sd_at(cols, p))

    def meets(cols, p: int):  # can still meet the SLO with the fastest rest
        # (a plan at the SLO stays: these sums round apart from the prediction's, see tests)
        ok = cols[:, 0] + lb_mean[p] + z * sd_at(cols, p) <= slo_ms * (1 + 1e-9)
        idx = np.flatnonzero(ok)
        ok[idx] = rest_mean.within(cols[idx], p, slo_ms * (1 + 1e-9))
        return ok

    def keys(cols, p: int):
        z_mean = cols[:, 0] + z * np.sqrt(cols[:, 1])
        return np.column_stack([cols[:, 0], z_mean, cols[:, 2], *_bytes_keys(cols, p, fm, fw)])

    def rank(cols, p: int):
        return cols[:, 2] + rest.value(cols, p)

    # a beam of the same search finds a good complete plan early: an incumbent to prune with
    beam = _search(model, by_start, end, limits, keys, meets, cap=BEAM_WIDTH, rank=rank)[end]
    if len(beam.cols):  # at the end, meets() is the SLO itself
        incumbent = min(incumbent, beam.cols[:, 2].min() * (1 + 1e-9))

    def keep(cols, p: int):
        ok = meets(cols, p)
        idx = np.flatnonzero(ok)
        ok[idx] = rest.within(cols[idx], p, incumbent)
        return ok

    kept = _search(model, by_start, end, limits, keys, keep)
    finals = kept[end].cols  # all meet the SLO (keep's test at the end)
    if not len(finals):
        raise PlanningError(
            f"no plan meets {slo_ms:g} ms at p{percentile * 100:g} within the memory limits"
        )
    best = _path(kept, by_start, end, int(np.lexsort((finals[:, 0], finals[:, 2]))[0]))
    return PlanChoice(tuple(best), model.predict(best))
