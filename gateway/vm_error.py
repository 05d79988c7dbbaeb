"""What the VM-path prediction gets wrong, learnt from answers (``ModelStats.vm_prediction_factor``).

The queue model sees the gateway's outstanding counts and the batch-time curve; it does not see
a loaded host, the model server's own overheads or a pick that landed behind a long batch. The
99th percentile of observed over predicted latency, over recent answers, scales the prediction
(bounded as the policy bounds it). Each answer is compared with the unscaled prediction: its
prediction is divided by the factor published when it was routed, so the factor does not feed
on itself.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Protocol

from policies.state import LatencyQuantiles
from policies.vm_perf import MAX_PREDICTION_FACTOR, MIN_PREDICTION_FACTOR

PREDICTION_WINDOW_S = 30.0  # recent enough to follow a step in load
MIN_RATIO_SAMPLES = 20


class _Window(Protocol):
    window_s: float

    def add(self, now_s: float, latency_ms: float) -> None: ...

    def quantiles(self, now_s: float) -> LatencyQuantiles | None: ...


class PredictionError:
    def __init__(self, ratios: _Window):
        self._ratios = ratios  # unitless ratios kept in a latency window
        self._factors: deque[tuple[float, float]] = deque([(-math.inf, 1.0)])

    def on_answer(self, now_s: float, predicted_ms: float | None, path_ms: float | None) -> None:
        if not predicted_ms or path_ms is None or math.isinf(predicted_ms):
            return
        raw_ms = predicted_ms / self._factor_at(now_s - path_ms / 1e3)
        self._ratios.add(now_s, path_ms / raw_ms)

    def factor(self, now_s: float) -> float:
        """The factor to publish now (remembered with its time)."""
        ratios = self._ratios.quantiles(now_s)
        factor = 1.0
        if ratios is not None and ratios.count >= MIN_RATIO_SAMPLES:
            factor = min(max(ratios.p99_ms, MIN_PREDICTION_FACTOR), MAX_PREDICTION_FACTOR)
        if factor != self._factors[-1][1]:
            self._factors.append((now_s, factor))
            horizon = now_s - 2 * self._ratios.window_s  # older than any answer still to come
            while len(self._factors) > 1 and self._factors[1][0] < horizon:
                self._factors.popleft()
        return factor

    def _factor_at(self, t_s: float) -> float:
        for when, factor in reversed(self._factors):
            if when <= t_s:
                return factor
        return self._factors[0][1]
