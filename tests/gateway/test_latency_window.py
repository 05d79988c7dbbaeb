"""The live view's latency window: quantiles over the last window_s, newest samples kept."""

from __future__ import annotations

import numpy as np

from gateway.latency_window import LatencyWindow


def test_quantiles_cover_only_the_window():
    window = LatencyWindow(10.0)
    assert window.quantiles(0.0) is None
    for i in range(100):
        window.add(float(i) / 10, 1.0 if i < 50 else 100.0)  # t = 0.0 .. 9.9 s
    q = window.quantiles(9.9)
    assert q.count == 100 and q.p50_ms == np.percentile([1.0] * 50 + [100.0] * 50, 50)
    q = window.quantiles(15.0)  # samples from t >= 5.0 s: the slow half only
    assert q.count == 50 and q.p50_ms == q.p99_ms == 100.0
    assert window.quantiles(30.0) is None


def test_a_full_window_keeps_the_newest_samples():
    window = LatencyWindow(1e9, max_samples=8)
    for i in range(20):
        window.add(float(i), float(i))
    q = window.quantiles(20.0)
    assert q.count == 8
    assert q.p50_ms == np.percentile(np.arange(12.0, 20.0), 50)  # 12..19 kept, 0..11 dropped


def test_quantiles_equal_numpys_linear_percentiles():
    rng = np.random.default_rng(7)
    for count in (1, 2, 3, 7, 100, 4096):
        for values in (rng.exponential(20.0, count), np.round(rng.uniform(0, 3, count))):
            window = LatencyWindow(1e9, max_samples=4096)
            for i, value in enumerate(values):
                window.add(float(i), float(value))
            q = window.quantiles(float(count))
            assert (q.p50_ms, q.p90_ms, q.p99_ms) == tuple(np.percentile(values, (50, 90, 99)))
