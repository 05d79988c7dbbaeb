"""The VM prediction's learnt correction, by regime: how deep in the SLO the raw prediction is.

The queue model (``vm_perf``) counts the rows ahead of a request, not the rows that arrive
behind it while it waits and ride in its own batch. For a short queue that batch is most of
the latency, so the tail runs 1.5-2.4x over the prediction (one row running, 12 ms, and a
batch of five joiners behind it); behind a deep queue it is a small part, and predictions near
the SLO were right at p99 within 5-15 %. One factor learnt over all answers took the short
queues' tail (1.45-1.65) and applied it to the deep predictions where spill is decided, so
routing spilled requests the VM would have answered in time (Azure conversation x20 on one VM:
8.3 % spilled where 5.8 % would have missed).

So the observed/raw ratio is learnt per regime, and the factor applied to a prediction is the
one measured on answers predicted in the same regime. Regimes are the raw prediction's nearest
knot (in log) of ``REGIME_FRACTIONS_OF_SLO``: one per doubling up to the SLO, where the
decision is. Between knots the factor is interpolated, so the scaled prediction is continuous
and strictly increasing in the raw one (the gateway recovers the raw prediction of each answer
from the table in force when it was routed: ``FactorTable.raw_of``), and a deeper queue is
never predicted faster than a shorter one. A regime with too few answers takes its nearest
neighbour's factor (the shallower one first: the larger, the safe side), as a deep regime
that is never routed to would otherwise never learn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# bounds of the learnt observed/predicted correction: enough to cover a loaded host, not enough
# for one bad window to send everything away
MIN_PREDICTION_FACTOR = 0.8
MAX_PREDICTION_FACTOR = 2.0
MIN_RATIO_SAMPLES = 20  # answers a regime's p99 is taken from, at least
REGIME_FRACTIONS_OF_SLO = (0.125, 0.25, 0.5, 1.0)  # doublings: knots twice apart
# with knots twice apart and the factor linear between them, the scaled prediction
# r * f(r) keeps growing while the next knot's factor is over 2/3 of this one's
MIN_NEXT_FACTOR_SHARE = 0.7


@dataclass(frozen=True)
class FactorTable:
    """Factors at raw-prediction knots (ms, ascending); constant outside, linear between."""

    knots_ms: tuple[float, ...]
    factors: tuple[float, ...]

    def rounded(self, step: float) -> FactorTable:
        """Factors in steps of ``step``, still keeping the scaled prediction increasing."""
        factors = [round(f / step) * step for f in self.factors]
        for i in range(1, len(factors)):
            floor = math.ceil(factors[i - 1] * MIN_NEXT_FACTOR_SHARE / step - 1e-9) * step
            factors[i] = max(factors[i], floor)
        return FactorTable(self.knots_ms, tuple(factors))

    def factor_at(self, raw_ms: float) -> float:
        knots, factors = self.knots_ms, self.factors
        if raw_ms <= knots[0]:
            return factors[0]
        for i in range(1, len(knots)):
            if raw_ms <= knots[i]:
                c0, c1 = knots[i - 1], knots[i]
                return factors[i - 1] + (factors[i] - factors[i - 1]) * (raw_ms - c0) / (c1 - c0)
        return factors[-1]

    def scale(self, raw_ms: float) -> float:
        return raw_ms * self.factor_at(raw_ms)

    def raw_of(self, predicted_ms: float) -> float:
        """The raw prediction this table scales to ``predicted_ms`` (the scaling is strictly
        increasing, so it is the one)."""
        knots, factors = self.knots_ms, self.factors
        if predicted_ms <= knots[0] * factors[0]:
            return predicted_ms / factors[0]
        for i in range(1, len(knots)):
            c0, c1, f0, f1 = knots[i - 1], knots[i], factors[i - 1], factors[i]
            if predicted_ms <= c1 * f1:
                # r * (f0 + s (r - c0)) = p: s r^2 + b r - p = 0, the root within [c0, c1]
                s = (f1 - f0) / (c1 - c0)
                b = f0 - s * c0
                return (
                    2.0 * predicted_ms / (b + math.sqrt(max(b * b + 4.0 * s * predicted_ms, 0.0)))
                )
        return predicted_ms / factors[-1]


def regime_knots_ms(slo_ms: float) -> tuple[float, ...]:
    return tuple(fraction * slo_ms for fraction in REGIME_FRACTIONS_OF_SLO)


def regimes(raw_ms: np.ndarray, slo_ms: float) -> np.ndarray:
    """Each raw prediction's regime: the index of its nearest knot, in log."""
    first = REGIME_FRACTIONS_OF_SLO[0] * slo_ms
    doublings = np.log2(np.maximum(raw_ms, 1e-9) / first)
    return np.clip(np.rint(doublings), 0, len(REGIME_FRACTIONS_OF_SLO) - 1).astype(np.int64)


def p99(values: np.ndarray, quantile: float = 0.99) -> float:
    """Nearest-rank 99th percentile (as the simulator's latency windows take it), or another."""
    k = int(quantile * (values.size - 1))
    return float(np.partition(values, k)[k])


def learn_table(raw_ms, ratios, slo_ms: float, quantile: float = 0.99) -> FactorTable | None:
    """The factor table from answers' raw predictions and observed/raw ratios; ``None`` (no
    correction) before ``MIN_RATIO_SAMPLES`` answers. At ``quantile`` of the ratios: the p99
    one corrects the routing's prediction; a lower one calibrates the same raw prediction at
    that quantile, what the error budget judges a VM by (``routing.error_budget``)."""
    raw_ms, ratios = np.asarray(raw_ms, dtype=float), np.asarray(ratios, dtype=float)
    if ratios.size < MIN_RATIO_SAMPLES:
        return None
    regime = regimes(raw_ms, slo_ms)
    n = len(REGIME_FRACTIONS_OF_SLO)
    own: list[float | None] = [None] * n
    for i in range(n):
        mine = ratios[regime == i]
        if mine.size >= MIN_RATIO_SAMPLES:
            own[i] = p99(mine, quantile)
    if all(f is None for f in own):
        own = [p99(ratios, quantile)] * n  # enough answers in all, none in one regime: one factor
    factors = [_nearest(own, i) for i in range(n)]
    bounded = [min(max(f, MIN_PREDICTION_FACTOR), MAX_PREDICTION_FACTOR) for f in factors]
    for i in range(1, n):  # the scaled prediction keeps growing with the raw one
        bounded[i] = max(bounded[i], bounded[i - 1] * MIN_NEXT_FACTOR_SHARE)
    return FactorTable(regime_knots_ms(slo_ms), tuple(bounded))


def _nearest(own: list[float | None], i: int) -> float:
    """Regime ``i``'s factor, else its nearest learnt neighbour's, the shallower on a tie."""
    for distance in range(len(own)):
        for j in (i - distance, i + distance):
            factor = own[j] if 0 <= j < len(own) else None
            if factor is not None:
                return factor
    raise ValueError("no regime learnt")
