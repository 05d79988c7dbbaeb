"""The gateway's learnt VM prediction factors (``gateway/vm_error.py``) in simulated time.

The gateway scales every VM-path prediction by the factor of its regime, learnt from the
answers of the last ``PREDICTION_WINDOW_S`` by ``policies.vm_factor.learn_table`` (the 99th
percentile of observed over raw predicted latency per regime). Here the engine records each VM
request's raw prediction, recovered from its published one with the table in force when it was
routed (the one of its tick), as the gateway recovers it.
"""

from __future__ import annotations

from bisect import bisect_left

import numpy as np

from gateway.vm_error import PREDICTION_WINDOW_S
from policies.vm_factor import FactorTable, learn_table

SAMPLE_CAP = 1000  # answers the factors are learnt from, at most (an even sample past it)
MAX_LATENCY_S = 10.0  # answers routed earlier than the window by more are not looked for
FACTOR_STEP = 0.05  # published factors move in these steps (each change drops the route cache)


class PredictionFactor:
    def __init__(
        self, arrivals, arrivals_np, lat: list[float], sim_profile, budget_quantile: float = 0.99
    ):
        self.arr, self.arr_np, self.lat = arrivals, arrivals_np, lat
        self.raw_ms = [0.0] * len(arrivals)  # the engine writes VM requests' raw predictions
        self.overhead_ms = sim_profile.gateway_overhead_ms  # not on the VM path the gateway times
        self.slo_ms = sim_profile.slo_ms
        self.table: FactorTable | None = None
        # the same raw predictions calibrated at the error budget's quantile (slo_aware)
        self.budget_quantile = budget_quantile
        self.budget_table: FactorTable | None = None

    def update(self, now_s: float) -> FactorTable | None:
        """The table to publish now: the learnt one once one of its factors is a step (0.05)
        or more away from the one published (each change drops the route cache; flickering
        between two neighbouring steps dropped it at a third of the updates)."""
        learnt, budget = self._learn(now_s)
        old = self.table
        if learnt is None or old is None or _moved(learnt, old):
            self.table = learnt
        old = self.budget_table
        if budget is None or old is None or _moved(budget, old):
            self.budget_table = budget
        return self.table

    def _learn(self, now_s: float) -> tuple[FactorTable | None, FactorTable | None]:
        # answers of the window: routed at most the window plus a generous latency ago
        lo = bisect_left(self.arr, now_s - PREDICTION_WINDOW_S - MAX_LATENCY_S)
        hi = bisect_left(self.arr, now_s, lo)
        step = max(1, (hi - lo) // SAMPLE_CAP)
        raw_ms = np.asarray(self.raw_ms[lo:hi:step])
        lat = np.asarray(self.lat[lo:hi:step])
        t = self.arr_np[lo:hi:step]
        done_s = t + lat / 1000.0
        ok = (raw_ms > 0) & (lat > 0) & (done_s <= now_s) & (done_s > now_s - PREDICTION_WINDOW_S)
        raw_ms, ratios = raw_ms[ok], (lat[ok] - self.overhead_ms) / raw_ms[ok]
        table = learn_table(raw_ms, ratios, self.slo_ms)
        if table is None:
            return None, None
        budget = None
        if self.budget_quantile < 0.99:
            budget = learn_table(raw_ms, ratios, self.slo_ms, self.budget_quantile)
            budget = budget.rounded(FACTOR_STEP) if budget is not None else None
        # in steps of 0.05: each change drops the route cache (a 1 M-request diurnal run,
        # slo-aware: 12.5 s CPU with 0.01 steps, 9.6 s with 0.05, 8.8 s without learning)
        return table.rounded(FACTOR_STEP), budget


def _moved(new: FactorTable, old: FactorTable) -> bool:
    if new.knots_ms != old.knots_ms:
        return True
    return any(
        abs(a - b) > FACTOR_STEP + 1e-9 for a, b in zip(new.factors, old.factors, strict=True)
    )
