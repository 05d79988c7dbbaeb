"""The async-class bound (``optimum_async``) made a bound for runs that meet a percentile SLO.

It served every interactive request on time, each 1 s bin within itself; a run may let
``1 - p`` of its requests be late and queue a bin's last ``slo`` into the next. With an
interactive base one VM carries and a 1 s spike 1.3 % of the requests, one VM all along met
99.2 % for $0.02833 where the "bound" (a second VM for the spike) said $0.03086
(tests/ops/test_siminv_optimum.py). Here, as in ``optimum_carry``:
- late requests cost a multiplier ``mu`` (interactive and async alike: functions at
  ``min(price, mu)``) and ``mu x allowance`` is taken off: a lower bound for every ``mu >= 0``
  (weak duality); the best of a few ``mu`` is kept;
- a VM serves a bin's interactive arrivals at ``C (1 + min(slo, bin) / bin)`` and starts one bin
  (and the bins' rounding) later, as ``optimum.widened_layers`` argues for the carried queue;
- what the run's function draws save below their mean at that ``mu`` (``DrawSlack``).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from .optimum_async import Economics, bound_for_trace

PROBES = 5  # multipliers tried, each one async bound (its time budget split between them)
BUDGET_S = 10.0  # the async bound's own budget, shared


def async_late_bound(
    trace, bin_s: float, deadlines: dict, econ: Economics, allowance: float, slo_s: float, less
) -> dict:
    """The best of the bounds at a few ``mu`` (``less(mu)``: the draws' slack there)."""
    edge = max(bin_s - 1.0, 0.0)  # (coarse bins round a VM's interval out: optimum_carry.coarsened)
    widened = dataclasses.replace(
        econ,
        capacity=econ.capacity * (1.0 + min(slo_s, bin_s) / bin_s),
        boot_s=max(econ.boot_s - bin_s - 2.0 * edge, 0.0),
    )
    if allowance <= 0:
        sol = bound_for_trace(trace, bin_s, deadlines, widened)
        return {**sol, "cost_usd": sol["cost_usd"] - less(math.inf)}
    best = None
    for mu in multipliers(econ):
        priced = dataclasses.replace(
            widened, fn_usd=min(widened.fn_usd, mu), fn_async_usd=min(widened.fn_async_usd, mu)
        )
        sol = bound_for_trace(trace, bin_s, deadlines, priced, BUDGET_S / PROBES)
        value = sol["cost_usd"] - mu * allowance - less(mu)
        if best is None or value > best["cost_usd"]:
            best = {**sol, "cost_usd": value, "late": allowance}
    return best


def multipliers(econ: Economics) -> list[float]:
    """From a function's price to what a VM's start and billing minimum cost, geometrically
    (a late request is worth at most what serving it in time could cost)."""
    low = econ.fn_async_usd
    high = econ.vm_usd_per_s * max(econ.boot_s, econ.min_billed_s, 1.0)
    if math.isfinite(econ.fn_usd):
        high = min(high, max(econ.fn_usd, low))
    high = max(high, low)
    return np.geomspace(low, high, PROBES).tolist() if high > low else [low]
