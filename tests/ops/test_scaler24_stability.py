"""The stability bench's perturbations (ops/bench/scaler24_stability.py): an arrival jitter keeps
every request, in order, within its bound; the spread is what the table prints."""

from __future__ import annotations

import numpy as np

from ops.bench.scaler24_stability import PERTURBATIONS, jittered, spread
from ops.traces import Trace


def _trace() -> Trace:
    t = np.sort(np.random.default_rng(0).uniform(0.0, 100.0, 2000))
    zeros = np.zeros(t.size, np.int32)
    return Trace("t", t, zeros, zeros)


def test_a_jitter_moves_each_arrival_within_its_bound_and_keeps_every_request():
    trace = _trace()
    moved = jittered(trace, 1, jitter_s=0.5)
    assert len(moved) == len(trace)
    assert np.all(np.diff(moved.arrivals_s) >= 0)
    # the same multiset moved by at most 0.5 s: sorted against sorted, within the bound
    assert np.max(np.abs(np.sort(moved.arrivals_s) - trace.arrivals_s)) <= 0.5 + 1e-9
    assert not np.array_equal(moved.arrivals_s, trace.arrivals_s)
    assert np.array_equal(jittered(trace, 1).arrivals_s, moved.arrivals_s)  # seeded


def test_the_spread_is_attainment_points_and_cost_percent():
    runs = [{"attain": 0.99, "cost": 1.0}, {"attain": 0.985, "cost": 1.1}]
    points, pct = spread(runs)
    assert abs(points - 0.5) < 1e-9 and abs(pct - 10.0) < 1e-9
    assert all(p[0][0] == "base" for p in PERTURBATIONS.values())  # the row's figure is base's
