"""The gateway's learnt VM prediction factor (``gateway/vm_error.py``) in simulated time.

The gateway scales every VM-path prediction by the 99th percentile of observed over predicted
latency of the answers of the last ``PREDICTION_WINDOW_S`` (at least ``MIN_RATIO_SAMPLES``,
bounded as ``policies.vm_perf`` bounds it), each answer compared with its unscaled prediction.
Here the engine records each VM request's prediction divided by the factor in force when it
was routed (the one of its tick).
"""

from __future__ import annotations

from bisect import bisect_left

import numpy as np

from gateway.vm_error import MIN_RATIO_SAMPLES, PREDICTION_WINDOW_S
from policies.vm_perf import MAX_PREDICTION_FACTOR, MIN_PREDICTION_FACTOR


SAMPLE_CAP = 1000  # answers a p99 is taken over, at most (an even sample past it)
MAX_LATENCY_S = 10.0  # answers routed earlier than the window by more are not looked for


class PredictionFactor:
    def __init__(self, arrivals: list[float], arrivals_np, lat: list[float], sim_profile):
        self.arr, self.arr_np, self.lat = arrivals, arrivals_np, lat
        self.raw_ms = [0.0] * len(arrivals)  # the engine writes VM requests' raw predictions
        self.overhead_ms = sim_profile.gateway_overhead_ms  # not on the VM path the gateway times
        self.factor = 1.0

    def update(self, now_s: float) -> float:
        """The factor to publish now: the learnt one once it is a step (0.05) or more away
        from the one published (each change drops the route cache; flickering between two
        neighbouring steps dropped it at a third of the updates)."""
        learnt = self._learn(now_s)
        if abs(learnt - self.factor) > 0.05 + 1e-9 or learnt == 1.0:
            self.factor = learnt
        return self.factor

    def _learn(self, now_s: float) -> float:
        # answers of the window: routed at most the window plus a generous latency ago
        lo = bisect_left(self.arr, now_s - PREDICTION_WINDOW_S - MAX_LATENCY_S)
        hi = bisect_left(self.arr, now_s, lo)
        step = max(1, (hi - lo) // SAMPLE_CAP)
        raw_ms = np.asarray(self.raw_ms[lo:hi:step])
        lat = np.asarray(self.lat[lo:hi:step])
        t = self.arr_np[lo:hi:step]
        done_s = t + lat / 1000.0
        ok = (raw_ms > 0) & (lat > 0) & (done_s <= now_s) & (done_s > now_s - PREDICTION_WINDOW_S)
        if int(ok.sum()) < MIN_RATIO_SAMPLES:
            return 1.0
        ratios = (lat[ok] - self.overhead_ms) / raw_ms[ok]
        k = int(0.99 * (ratios.size - 1))  # nearest rank, as the gateway's windows
        p99 = float(np.partition(ratios, k)[k])
        # in steps of 0.05: each change drops the route cache (a 1 M-request diurnal run,
        # slo-aware: 12.5 s CPU with 0.01 steps, 9.6 s with 0.05, 8.8 s without learning)
        return round(min(max(p99, MIN_PREDICTION_FACTOR), MAX_PREDICTION_FACTOR) * 20) / 20
