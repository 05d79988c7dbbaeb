"""The VM batch-time curve the gateway learns: per batch size, the median of its batches over
the last minute.

The predictive scaler sizes the fleet by this curve (a replica's full-batch rate, mixed over the
models), and routing predicts the VM path from it. It was an EWMA (0.2 a batch) of each batch's
wall time, so it followed every batch: on a host loaded by other work, one late wake-up of the
inference thread moved a point by 8 ms (``delay_b`` b(7): one batch of 129 ms where the rest
took ~90) and the fleet sizing rate the scaler reads moved 72-81 req/s tick to tick, enough to
flip a ceil near a fleet boundary (session 25's kept run 4; the simulator, on its fixed profile,
79-81).

A spell of host load is shorter than a VM's boot, which a VM asked for on it would not
outlive. So each point is the median of that size's batches over ``WINDOW_S``: it holds while
fewer than half the batches of the last minute were slowed, and follows a replica that really
got slower once half the minute shows it (a fifth of a replica's 20 batches a second 5-60 ms
late, seeded, over two minutes: the sizing rate of one model by an EWMA 84-126 req/s, 40 in one
tick; by the median of the last 16 batches 97-126; by the lower quartile of the minute
126.1-126.4). The median, not the lower quartile (session 26's first cut): the simulator sizes
by the profile's median batch times, and a quartile sizes the live fleet for batches faster
than half of them ran. The spread that load adds is not lost: routing's tail factor is measured on the idle requests' latencies
(``policies/vm_perf.py``). The last ``MIN_KEEP`` batches of a size are kept however old, so a
size seen rarely keeps its point. CPU time of the inference thread would not do: a model that
waits (the ``delay`` model, I/O, a GPU) spends its service time off the CPU.
"""

from __future__ import annotations

import bisect
from collections import deque

WINDOW_S = 60.0  # the collector's latency window
QUANTILE = 0.5
MIN_KEEP = 16  # batches of a size kept past the window
MAX_KEEP = 1024  # and at most this many (a busy replica's full batches: ~20 a second)


class BatchCurve:
    """Service time (ms) by rows per batch: each size's ``QUANTILE`` over ``window_s``."""

    def __init__(self, window_s: float = WINDOW_S):
        self.window_s = window_s
        self._seen: dict[int, _Batches] = {}
        self._points: tuple[tuple[int, float], ...] | None = ()

    def add(self, now_s: float, rows: int, service_ms: float) -> None:
        batches = self._seen.get(rows)
        if batches is None:
            batches = self._seen[rows] = _Batches()
        batches.add(now_s, service_ms, now_s - self.window_s)
        self._points = None

    def points(self, now_s: float) -> tuple[tuple[int, float], ...]:
        """``(rows, ms)`` by ascending rows, as ``ModelStats.vm_service_ms_by_batch`` holds it."""
        if self._points is None or any(
            b.expired(now_s - self.window_s) for b in self._seen.values()
        ):
            since_s = now_s - self.window_s
            self._points = tuple(
                (rows, self._seen[rows].quantile(since_s)) for rows in sorted(self._seen)
            )
        return self._points

    def __bool__(self) -> bool:
        return bool(self._seen)


class _Batches:
    """One size's batches: in arrival order (to expire them) and sorted (for the quantile)."""

    def __init__(self) -> None:
        self._in_order: deque[tuple[float, float]] = deque()
        self._sorted: list[float] = []

    def add(self, now_s: float, service_ms: float, since_s: float) -> None:
        self._in_order.append((now_s, service_ms))
        bisect.insort(self._sorted, service_ms)
        self._expire(since_s)

    def expired(self, since_s: float) -> bool:
        return len(self._in_order) > MIN_KEEP and self._in_order[0][0] < since_s

    def quantile(self, since_s: float) -> float:
        self._expire(since_s)
        ordered = self._sorted
        return ordered[int(QUANTILE * (len(ordered) - 1) + 0.5)]

    def _expire(self, since_s: float) -> None:
        while len(self._in_order) > MAX_KEEP or self.expired(since_s):
            _, service_ms = self._in_order.popleft()
            del self._sorted[bisect.bisect_left(self._sorted, service_ms)]
