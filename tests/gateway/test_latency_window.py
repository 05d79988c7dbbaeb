"""The live view's latency window: quantiles over the last window_s, newest samples kept."""

from __future__ import annotations

import numpy as np

import pytest

from gateway.latency_window import LatencyWindow, RateCounter


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


def test_the_rate_does_not_depend_on_where_in_a_second_it_is_read():
    """Ten arrivals a second, read at any phase of the clock's second: ten a second. Whole-
    second buckets read 9.1 at t = 20.05 (the window's first 0.95 s fell out with its bucket)
    and 9.9 at t = 20.9, so a tick's phase moved the autoscaler's input by up to 10 %."""
    arrivals = [i / 10 + 0.033 for i in range(300)]  # t = 0.033 .. 29.933 s
    for now in (20.0, 20.05, 20.3, 20.5, 20.9, 20.99, 29.95):
        counter = RateCounter(10.0)
        for t in arrivals:
            if t <= now:
                counter.add(t)
        assert abs(counter.rate(now) - 10.0) <= 0.1, now  # one arrival at most, not 9
    assert counter.rate(45.0) == 0.0  # the window is past every arrival


def test_the_rate_counts_a_burst_only_while_it_is_in_the_window():
    counter = RateCounter(10.0)
    for _ in range(50):
        counter.add(3.21)
    assert counter.rate(3.3) == 5.0
    assert counter.rate(13.2) == 5.0  # 3.21 is still inside (3.2, 13.2]
    assert counter.rate(13.3) == 0.0
    with pytest.raises(ValueError):
        RateCounter(0.0)
