"""Sliding windows of the live view: latencies and their quantiles (p50/p90/p99 per path), and
arrival rates."""

from __future__ import annotations

import math
from array import array
from collections import deque

import numpy as np

from policies.state import LatencyQuantiles

_QUANTILES = (0.50, 0.90, 0.99)


class LatencyWindow:
    """The latencies of the last ``window_s`` (the newest ``max_samples`` at most) in two ring
    buffers, so a refresh takes the quantiles in one vectorised pass: walking a deque of 4,096
    tuples with a generator was a tenth of the gateway's CPU per request under load (py-spy,
    mlp at 16 clients)."""

    def __init__(self, window_s: float, max_samples: int = 4096):
        self.window_s = window_s
        self._times = array("d", [-math.inf]) * max_samples  # -inf: an empty slot
        self._values = array("d", [0.0]) * max_samples
        self._next = 0  # the slot the next sample takes (the oldest one once full)

    def add(self, now_s: float, latency_ms: float) -> None:
        slot = self._next
        self._times[slot] = now_s
        self._values[slot] = latency_ms
        self._next = slot + 1 if slot + 1 < len(self._times) else 0

    def quantiles(self, now_s: float) -> LatencyQuantiles | None:
        recent = np.frombuffer(self._times) >= now_s - self.window_s
        values = np.frombuffer(self._values)[recent]
        if not len(values):
            return None
        p50, p90, p99 = _percentiles(values)
        return LatencyQuantiles(p50, p90, p99, len(values))


def _percentiles(values: np.ndarray) -> tuple[float, float, float]:
    """``np.percentile(values, (50, 90, 99))`` (its default, linear interpolation between the
    closest ranks) from one ``np.partition``: np.percentile's own machinery cost ~190 us on a
    full window, 15 % of the gateway's main thread on mlp at 16 clients (py-spy)."""
    last = len(values) - 1
    positions = [q * last for q in _QUANTILES]
    below = [int(p) for p in positions]
    above = [min(b + 1, last) for b in below]
    ranks = below + above
    low_and_high = np.partition(values, ranks)[ranks].tolist()
    p50, p90, p99 = [
        _lerp(low, high, p - b)
        for p, b, low, high in zip(
            positions, below, low_and_high[:3], low_and_high[3:], strict=True
        )
    ]
    return p50, p90, p99


def _lerp(low: float, high: float, fraction: float) -> float:
    # numpy's lerp: exact at both ends, so a window of equal values gives that value back
    diff = high - low
    return high - diff * (1.0 - fraction) if fraction >= 0.5 else low + diff * fraction


class RateCounter:
    """Arrivals over the last ``window_s``, the same whatever the phase of the clock it is read
    at: counted in buckets of ``window_s / BUCKETS_PER_WINDOW``, the one the window's start
    cuts counted pro rata. One-second buckets keyed on the clock's whole seconds covered 9 to
    10 s of a 10 s window depending on where in its second a tick fell, so the rate the
    autoscaler read ran up to 10 % low, by a phase that changed from one replay to the next
    (the simulator counts the exact window)."""

    BUCKETS_PER_WINDOW = 200

    def __init__(self, window_s: float):
        if window_s <= 0:
            raise ValueError("window_s must be positive")
        self.window_s = window_s
        self._width_s = window_s / self.BUCKETS_PER_WINDOW
        self._buckets: deque[list] = deque()  # [bucket index, count], oldest first
        self._total = 0  # the arrivals in the buckets kept

    def add(self, now_s: float) -> None:
        index = math.floor(now_s / self._width_s)
        buckets = self._buckets
        if buckets and buckets[-1][0] >= index:  # (a clock read late by another thread)
            buckets[-1][1] += 1
        else:
            buckets.append([index, 1])
        self._total += 1

    def rate(self, now_s: float) -> float:
        start = (now_s - self.window_s) / self._width_s  # the window's start, in buckets
        buckets = self._buckets
        while buckets and buckets[0][0] + 1 <= start:
            self._total -= buckets.popleft()[1]
        total = float(self._total)
        if buckets and buckets[0][0] < start:  # cut by the window's start: the part inside
            total -= buckets[0][1] * (start - buckets[0][0])
        return total / self.window_s
