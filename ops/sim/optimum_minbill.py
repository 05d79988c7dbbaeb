"""The offline optimum's interactive bound where a VM's billing minimum outlasts its boot.

``optimum_carry`` bills a start its boot only: with a 10 s boot and the 60 s minimum it relaxes
50 s of every VM started for a short burst (Azure code x20: $0.142, where this bound is higher).
The per-layer model cannot keep the minimum either: its layers nest the VMs' intervals, and a
short top layer owes a minimum that a fleet stopping its oldest VM first does not.

The billing minimum as a constraint: a VM billed for its minimum may as well serve until it
ends, and serving more never costs more, so some cheapest schedule keeps every VM it starts up
for at least ``M = floor((min_billed - boot) / bin)`` bins. Then in every bin
``n(t) >= (VMs started in the last M bins)``. This DP keeps the part of that constraint which
fits a small state: ``n(t) >= y`` while the oldest young start (``j`` bins ago) is younger than
``M``, where ``y`` counts the VMs started since it (the later ones are taken to expire with it,
and once it expires they are forgotten: fewer constraints, a lower value). State (VMs up,
bins since the oldest young start, VMs started since), or "no young start". The queue is
the widened one: bin t's arrivals get at most ``C bin n(t) + C min(slo, bin) n(t+1)`` (the
VMs' capacity is not shared with the work carried in: a relaxation). At the trace's end each
young VM still owes the rest of its minimum. The other relaxations are ``optimum_carry``'s
(fluid bins, warm functions, a fleet already up before the first bin, late requests at a
multiplier).
"""

from __future__ import annotations

import math

import numpy as np

from .optimum_carry import CarryProblem


def young_bins(pr: CarryProblem, min_billed_s: float) -> int:
    """``M``: bins a started VM stays up in some cheapest schedule (0 or 1: no constraint)."""
    return int(math.floor(max(min_billed_s - pr.boot_s, 0.0) / pr.bin_s + 1e-9))


def minbill_dp(pr: CarryProblem, min_billed_s: float, late_usd: float = math.inf) -> float:
    """Least cost of the relaxed problem, late requests at ``late_usd`` each (the allowance is
    the caller's to subtract). Its work is bins x (VMs + 1)^3 x M."""
    a = pr.capacity_per_s * pr.bin_s  # what a VM serves of its bin's arrivals
    b = pr.capacity_per_s * min(pr.slo_s, pr.bin_s)  # ... of the bin before's
    spill = min(pr.spill_usd, late_usd)
    d = pr.demand
    if a <= 0 or d.size == 0:
        return float(_price(d, spill).sum())
    layers = max(1, math.ceil(float(d.max(initial=0.0)) / a - 1e-12))
    big_m = max(young_bins(pr, min_billed_s), 1)
    n = np.arange(layers + 1, dtype=np.float64)
    up = pr.vm_usd_per_s * pr.bin_s * n
    boot = pr.start_usd()
    keep = np.where(n[:, None] >= n[None, :], 0.0, math.inf)  # [n, n']: n' <= n
    young_ok = np.where(n[:, None] >= n[None, :], 0.0, math.inf)  # [n', y]: n' >= y
    old = up + pr.initial_usd(n)  # any fleet may be up before the first bin
    young = np.full((layers + 1, big_m, layers + 1), math.inf)  # [n, j, y]
    for t in range(d.size - 1):
        over = d[t] - a * n[:, None] - b * n[None, :]  # [n, n']
        s = _price(over, spill)
        fresh = np.minimum(old, young[:, -1, :].min(axis=1))  # no start still young after t
        new_old = (old[:, None] + s + keep).min(axis=0)
        r = (young[:, None, :, :] + (s + keep)[:, :, None, None]).min(axis=0)  # [n', j, y]
        new_old = np.minimum(new_old, r[:, -1, :].min(axis=1)) + up
        new_young = np.full_like(young, math.inf)
        new_young[:, 1:, :] = r[:, :-1, :] + young_ok[:, None, :]
        for k in range(1, layers + 1):  # start k VMs, from n' - k up
            src = np.arange(layers + 1 - k)
            step = boot * k + s[src, src + k]
            np.minimum(new_young[k:, 0, k], fresh[src] + step, out=new_young[k:, 0, k])
            # while a start is young, later ones join it (they expire with it: fewer constraints)
            joined = young[src, :-1, : layers + 1 - k] + step[:, None, None]
            np.minimum(new_young[k:, 1:, k:], joined, out=new_young[k:, 1:, k:])
        new_young += up[:, None, None]
        old, young = new_old, new_young
    last = _price(d[-1] - (a + b) * n, spill)
    j = np.arange(big_m, dtype=np.float64)
    owed = pr.vm_usd_per_s * np.maximum(min_billed_s - pr.boot_s - (j + 1) * pr.bin_s, 0.0)
    young_end = young + owed[None, :, None] * n[None, None, :]
    return float(min((old + last).min(), (young_end + last[:, None, None]).min()))


def _price(over: np.ndarray, spill: float) -> np.ndarray:
    """What requests over the VMs' capacity cost (inf: functions cannot serve them)."""
    if math.isfinite(spill):
        return np.maximum(over, 0.0) * spill
    return np.where(over > 1e-9, math.inf, 0.0)
