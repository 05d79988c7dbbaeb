"""What the VM-path prediction gets wrong, learnt from answers (``ModelStats.vm_prediction_factors``).

The queue model sees the gateway's outstanding counts and the batch-time curve; it does not see
a loaded host, the model server's own overheads, a pick that landed behind a long batch, or the
rows that arrive behind a request and ride in its own batch. How much that matters depends on
how deep the prediction is (a short queue's tail runs 1.5-2.4x over it, a deep one's 5-15 %),
so the 99th percentile of observed over predicted latency is learnt per regime of the
prediction, and each prediction is scaled by its own regime's (``policies.vm_factor``, which
the simulator learns by too). Each answer is compared with its raw prediction, recovered from
the published one with the table in force when it was routed, so the factors do not feed on
themselves.
"""

from __future__ import annotations

import math
from array import array
from collections import deque

import numpy as np

from policies.vm_factor import MIN_RATIO_SAMPLES, FactorTable, learn_table

PREDICTION_WINDOW_S = 30.0  # recent enough to follow a step in load
__all__ = ["MIN_RATIO_SAMPLES", "PREDICTION_WINDOW_S", "PredictionError"]


class PredictionError:
    """Raw predictions and observed/raw ratios of the answers of the last ``window_s``, in ring
    buffers (a refresh learns from them in one vectorised pass, as ``LatencyWindow``)."""

    def __init__(self, window_s: float = PREDICTION_WINDOW_S, max_samples: int = 4096):
        self.window_s = window_s
        self._times = array("d", [-math.inf]) * max_samples  # -inf: an empty slot
        self._raw_ms = array("d", [0.0]) * max_samples
        self._ratios = array("d", [0.0]) * max_samples
        self._next = 0
        # the tables published, with when: an answer's prediction was scaled by the one in
        # force when it was routed
        self._tables: deque[tuple[float, FactorTable | None]] = deque([(-math.inf, None)])

    def on_answer(self, now_s: float, predicted_ms: float | None, path_ms: float | None) -> None:
        if not predicted_ms or path_ms is None or math.isinf(predicted_ms):
            return
        table = self._table_at(now_s - path_ms / 1e3)
        raw_ms = table.raw_of(predicted_ms) if table is not None else predicted_ms
        slot = self._next
        self._times[slot] = now_s
        self._raw_ms[slot] = raw_ms
        self._ratios[slot] = path_ms / raw_ms
        self._next = slot + 1 if slot + 1 < len(self._times) else 0

    def table(self, now_s: float, slo_ms: float, quantile: float = 0.99) -> FactorTable | None:
        """The factors to publish now (remembered with their time); ``None`` before enough
        answers. Another ``quantile`` calibrates the same predictions there (the error
        budget's), published with the routing's but not remembered: nothing is scaled by it."""
        recent = np.frombuffer(self._times) >= now_s - self.window_s
        raw_ms, ratios = np.frombuffer(self._raw_ms)[recent], np.frombuffer(self._ratios)[recent]
        if quantile != 0.99:
            return learn_table(raw_ms, ratios, slo_ms, quantile)
        learnt = learn_table(raw_ms, ratios, slo_ms)
        if learnt != self._tables[-1][1]:
            self._tables.append((now_s, learnt))
            horizon = now_s - 2 * self.window_s  # older than any answer still to come
            while len(self._tables) > 1 and self._tables[1][0] < horizon:
                self._tables.popleft()
        return learnt

    def _table_at(self, t_s: float) -> FactorTable | None:
        for when, table in reversed(self._tables):
            if when <= t_s:
                return table
        return self._tables[0][1]
