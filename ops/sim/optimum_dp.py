"""The dynamic programme behind the offline optimum: each VM "layer" is a two-state (off/on)
problem over time bins with a boot cost and a minimum-billing tail, solved exactly for every layer
at once in numpy, with per-bin prices and the on/off pattern recovered by backtracking.

States per layer: off, or on for j bins (j = 1 .. m, where m is the bins until billing becomes
linear; j = m means "m or more"). Before the first bin a layer is off or already up with its
minimum paid (as a simulation starts: VMs may already be running).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class LayerSolution:
    cost_usd: float  # sum over layers of weight x the layer's least cost
    per_layer_usd: np.ndarray  # (layers,)
    on: np.ndarray  # bool (layers, bins): the layer is up (billed) in the bin


def min_billing_tail(vm_usd_per_s: float, boot_s: float, min_billed_s: float, bin_s: float):
    """(m, tail): ``tail[j]`` is what stopping after j bins on still owes for the minimum."""
    m = max(1, math.ceil(max(min_billed_s - boot_s, 0.0) / bin_s))
    tail = np.array(
        [vm_usd_per_s * max(min_billed_s - boot_s - j * bin_s, 0.0) for j in range(m + 1)]
    )
    return m, tail


def solve(
    on_usd: np.ndarray,
    off_usd: np.ndarray,
    start_usd: float,
    tail: np.ndarray,
    weights: np.ndarray | None = None,
    initial_usd: float = 0.0,
) -> LayerSolution:
    """Least cost per layer. ``on_usd[k, t]``: layer k being up in bin t (its VM time, less any
    reward); ``off_usd[k, t]``: layer k being off (functions serve its share, ``inf`` if they
    cannot); ``start_usd``: a start (the boot is billed); ``tail``: from ``min_billing_tail``;
    ``initial_usd``: a layer up before the first bin (0, or a credit: ``CarryProblem.edge_s``)."""
    layers, bins = on_usd.shape
    m = tail.size - 1
    rows = np.arange(layers)
    off = np.zeros(layers)
    on = np.full((layers, m + 1), math.inf)
    on[:, m] = initial_usd
    from_on = np.zeros((bins, layers), dtype=bool)
    j_stop = np.zeros((bins, layers), dtype=np.int32)
    stayed = np.zeros((bins, layers), dtype=bool)
    for t in range(bins):
        stop = on + tail[None, :]
        jb = np.argmin(stop, axis=1)
        stop_best = stop[rows, jb]
        came_on = stop_best < off
        new_off = np.where(came_on, stop_best, off) + off_usd[:, t]
        new_on = np.full_like(on, math.inf)
        new_on[:, 1] = off + start_usd + on_usd[:, t]
        if m > 1:
            new_on[:, 2:] = on[:, 1:-1] + on_usd[:, t, None]
        stay = on[:, m] + on_usd[:, t]
        better = stay < new_on[:, m]
        new_on[:, m] = np.where(better, stay, new_on[:, m])
        from_on[t], j_stop[t], stayed[t] = came_on, jb, better
        off, on = new_off, new_on
    final = on + tail[None, :]
    jf = np.argmin(final, axis=1)
    end_on = final[rows, jf]
    use_on = end_on < off
    per_layer = np.where(use_on, end_on, off)
    state = np.where(use_on, jf, 0)
    up = np.zeros((layers, bins), dtype=bool)
    for t in range(bins - 1, -1, -1):
        up[:, t] = state > 0
        prev_off = np.where(from_on[t], j_stop[t], 0)
        prev_on = np.where(state == m, np.where(stayed[t], m, m - 1), state - 1)
        state = np.where(state == 0, prev_off, prev_on)
    w = np.ones(layers) if weights is None else np.asarray(weights, dtype=float)
    return LayerSolution(float((w * per_layer).sum()), per_layer, up)
