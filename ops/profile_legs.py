"""The legs' fits behind ``tidegate profile``: how a split stage's legs ran against the
single-thread time of their share of the work, from the real plans the profile runs.

``stage_observations`` reads each answer's stages; ``slowdowns`` fits, per split kind and fan-out
(the master's own legs apart), a slowdown, a time per node and a time per leg. Pure numbers in,
numbers out (``ops.profile_calibrate`` puts them in the profile).
"""

from __future__ import annotations

import itertools
import math

import numpy as np


def stage_observations(graph_node_ms: dict[str, float], plan, answers, unshared=None) -> list[dict]:
    """Per split stage of each answer: kind, legs, measured wall and per-leg compute, and the
    single-thread time its legs' work takes (from node times): its share of the stage's MACs,
    beyond what every leg computes whole (``unshared(nodes, split, packed)`` in ms:
    ``policies.perf.PerfModel.unshared_ms``, as the model prices legs; none: 0)."""
    out = []
    for a in answers:
        for st_plan, st in zip(plan.stages, a.report.stages):
            whole = sum(graph_node_ms[n] for n in st_plan.nodes)
            if st_plan.split == "serial":
                out.append(
                    {
                        "split": "serial",
                        "workers": 0,
                        "wall_ms": st.wall_ms,
                        "single_ms": whole,
                        "legs_ms": [st.wall_ms],
                    }
                )
                continue
            part = unshared(st_plan.nodes, st_plan.split.value, st_plan.packed) if unshared else 0.0
            part = min(part, whole)
            share = [part + m / max(st_plan.macs, 1) * (whole - part) for m in st_plan.leg_macs]
            legs = list(st.worker_compute_ms)
            if legs and st.send_ms:  # the master's leg as the stage waits on it: it starts
                # once its remote requests are out (own_start_ms beyond its sends), 1-1.5 ms
                legs[0] += max(st.own_start_ms - st.send_ms, 0.0)
            out.append(
                {
                    "split": st_plan.split.value,
                    "workers": st_plan.workers,
                    "nodes": len(st_plan.nodes),
                    "wall_ms": st.wall_ms,
                    "single_ms": whole,
                    "leg_single_ms": share,
                    "legs_ms": legs,
                }
            )
    return out


def slowdowns(
    observations: list[dict],
) -> tuple[dict[str, dict[int, float]], dict[str, dict[int, float]], dict[str, dict[int, float]]]:
    """Per (kind, legs): (slowdown, ms per node, ms per leg), fitted over every measured leg
    (the master's own legs apart, as kind ``SPLIT/master``) as
    ``measured = slowdown * single-thread share + ms_per_node * nodes + ms_per_leg``
    (least squares, so big stages weigh more than the many tiny ones). A leg's dispatch,
    cropping and padding do not shrink with its share of the work (per node), and a leg's
    start does not grow with its nodes (per leg: the master starts its own leg 1-1.5 ms after
    its sends, once its remote requests are out): without those terms the slowdown would
    absorb them and overcharge the big stages, and with one term for both the per-node time
    swung between profiles (VGG-11 0.44-2.3 ms/node). Serial stages: the ratio of sums."""
    rows: dict[tuple[str, int], list[tuple[float, float, float]]] = {}
    for o in observations:
        if o["split"] == "serial":
            rows.setdefault(("serial", 1), []).append((o["wall_ms"], o["single_ms"], 0.0))
            continue
        for leg, (measured, single) in enumerate(zip(o["legs_ms"], o["leg_single_ms"])):
            # the master's own leg (leg 0 of a fan-out) is fitted apart: it starts with no
            # hand-off and here computes faster per MAC than a worker's (burst.forkjoin)
            kind = f"{o['split']}/master" if leg == 0 and o["workers"] > 1 else o["split"]
            rows.setdefault((kind, o["workers"]), []).append(
                (measured, single, float(o.get("nodes", 0)))
            )
    slow: dict[str, dict[int, float]] = {}
    per_node: dict[str, dict[int, float]] = {}
    per_leg: dict[str, dict[int, float]] = {}
    for (kind, k), pts in rows.items():
        s, f, g = _fit_legs(np.array(pts, dtype=float))
        if s > 0:
            slow.setdefault(kind, {})[k] = s
            if kind != "serial":
                per_node.setdefault(kind, {})[k] = f
                per_leg.setdefault(kind, {})[k] = g
    return slow, per_node, per_leg


MIN_LEGS_PER_LEG_TERM = 6  # legs a three-term fit needs: with fewer it would fit the noise
# Legs whose one-thread share of the work is under this are all overhead: a slowdown fitted on
# them is that overhead over a near-zero share (a small model's output legs of 0.001 ms, run in
# 0.34 ms: 340x, then charged to its big stages: x2 58 ms, x3 172 ms, x4 96 ms predicted)
MIN_WORK_MS = 0.5


def _fit_legs(pts: np.ndarray) -> tuple[float, float, float]:
    """(slowdown, ms per node, ms per leg) for rows (measured, single, nodes): least squares
    with every term bounded below (slowdown >= 1.0 against node times from the same minutes,
    or the ratio of sums if that is lower; times >= 0), exact over the bounds' active sets.
    The ratio of sums alone when there are too few legs or no node counts; legs of no work
    (each under ``MIN_WORK_MS`` on one thread): slowdown 1 and their excess per leg."""
    measured, single, nodes = pts[:, 0], pts[:, 1], pts[:, 2]
    if single.max(initial=0.0) < MIN_WORK_MS:  # no work to fit a slowdown on: all per leg
        return 1.0, 0.0, max(float((measured - single).mean()), 0.0) if len(pts) else 0.0
    ratio = float(measured.sum() / single.sum()) if single.sum() > 0 else 0.0
    if len(pts) < 3 or not nodes.any() or ratio <= 0.0:
        return ratio, 0.0, 0.0
    # a leg sharing the cores is no faster than one thread alone in the same minutes
    # (ops.profile_drift.WindowNodeTimes): free terms traded off on a few noisy legs
    # (VGG-11's master 0.83x + 2.5 ms/node, then 1.04x + 0.4)
    lower = np.array([min(1.0, ratio), 0.0, 0.0])
    columns = np.stack([single, nodes, np.ones_like(single)], axis=1)
    terms = 3 if len(pts) >= MIN_LEGS_PER_LEG_TERM else 2
    best, best_sse = None, math.inf
    for free in itertools.product((True, False), repeat=terms):
        idx = [i for i, f in enumerate(free) if f]
        coef = np.concatenate([lower[:terms], np.zeros(3 - terms)])
        coef[idx] = 0.0  # free terms are fitted to what the bounded ones leave
        rest = measured - columns @ coef
        if idx:
            sol, *_ = np.linalg.lstsq(columns[:, idx], rest, rcond=None)
            coef[idx] = sol
        if np.any(coef[:terms] < lower[:terms] - 1e-9):
            continue
        sse = float(((measured - columns @ coef) ** 2).sum())
        if sse < best_sse - 1e-9:
            best, best_sse = coef, sse
    assert best is not None  # every term at its bound is feasible
    return float(best[0]), float(best[1]), float(best[2])
