"""The learnt VM prediction error: follows observed/raw per regime, does not feed on itself,
and is learnt as the simulator learns it."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.vm_error import MIN_RATIO_SAMPLES, PREDICTION_WINDOW_S, PredictionError
from policies.state import ManualClock
from policies.vm_factor import MAX_PREDICTION_FACTOR

SLO_MS = 4000.0


def test_the_factor_learns_the_ratio_and_is_not_compounded_by_its_own_scaling():
    clock = ManualClock(100.0)
    error = PredictionError()
    assert error.table(clock.now(), SLO_MS) is None  # nothing learnt yet
    raw_ms = 4000.0
    for _ in range(MIN_RATIO_SAMPLES):  # the VM path runs 1.5x over the queue model
        clock.advance(0.5)
        error.on_answer(clock.now(), predicted_ms=raw_ms, path_ms=1.5 * raw_ms)
    table = error.table(clock.now(), SLO_MS)
    assert table.factor_at(raw_ms) == pytest.approx(1.5)
    # routing now predicts 1.5x; the same host keeps the same error: the factor stays put
    clock.advance(10.0)
    for _ in range(3 * MIN_RATIO_SAMPLES):
        clock.advance(0.5)
        error.on_answer(clock.now(), predicted_ms=table.scale(raw_ms), path_ms=1.5 * raw_ms)
        error.table(clock.now(), SLO_MS)
    assert error.table(clock.now(), SLO_MS).factor_at(raw_ms) == pytest.approx(1.5)


def test_each_regime_learns_its_own_error_from_the_prediction_it_was_routed_with():
    """Short queues run 1.6x over (rows join their batch), deep ones 1.05x: a deep prediction
    is scaled by its own regime's factor, and answers routed under that table teach the same
    factors again (each is compared with its raw prediction, recovered from the table)."""
    clock = ManualClock(0.0)
    error = PredictionError()
    answers = [(40.0, 1.6), (280.0, 1.05)] * MIN_RATIO_SAMPLES
    for raw_ms, ratio in answers:
        clock.advance(0.1)
        error.on_answer(clock.now(), predicted_ms=raw_ms, path_ms=ratio * raw_ms)
    table = error.table(clock.now(), 300.0)  # knots 37.5, 75, 150, 300 ms
    assert table.factor_at(40.0) == pytest.approx(1.6)
    assert table.factor_at(280.0) == pytest.approx(1.05, abs=0.02)  # near its knot (300 ms)
    clock.advance(1.0)
    for raw_ms, ratio in answers:
        clock.advance(0.1)
        error.on_answer(clock.now(), table.scale(raw_ms), path_ms=ratio * raw_ms)
    clock.advance(PREDICTION_WINDOW_S - len(answers) * 0.1 - 0.5)  # the second round only
    again = error.table(clock.now(), 300.0)
    assert again.factors == pytest.approx(table.factors)


def test_the_factor_is_bounded_and_forgets_an_old_overload():
    clock = ManualClock(0.0)
    error = PredictionError()
    for _ in range(MIN_RATIO_SAMPLES):
        clock.advance(0.1)
        error.on_answer(clock.now(), predicted_ms=1000.0, path_ms=9000.0)
    assert error.table(clock.now(), SLO_MS).factor_at(1000.0) == MAX_PREDICTION_FACTOR
    clock.advance(PREDICTION_WINDOW_S + 1.0)
    assert error.table(clock.now(), SLO_MS) is None
    error.on_answer(clock.now(), predicted_ms=float("inf"), path_ms=50.0)  # ignored
    error.on_answer(clock.now(), predicted_ms=None, path_ms=50.0)
    assert error.table(clock.now(), SLO_MS) is None


def test_the_simulator_learns_the_factors_as_the_gateway_does():
    from dataclasses import replace

    from ops.sim.profile import SimProfile
    from ops.sim.vm_error import PredictionFactor

    rng = np.random.default_rng(4)
    n = 400
    arrivals = np.sort(rng.uniform(0.0, 20.0, n))
    raw = np.exp(rng.uniform(np.log(10.0), np.log(300.0), n))
    ratios = np.where(raw < 60.0, rng.uniform(0.6, 1.7, n), rng.uniform(0.6, 1.1, n))
    profile = replace(SimProfile.reference(), gateway_overhead_ms=0.0, slo_ms=300.0)
    lat = (raw * ratios).tolist()
    sim = PredictionFactor(arrivals.tolist(), arrivals, lat, profile)
    sim.raw_ms = raw.tolist()
    gateway = PredictionError()
    for t, r, ms in sorted(zip(arrivals + np.asarray(lat) / 1e3, raw, lat, strict=True)):
        gateway.on_answer(t, r, ms)
    now = 25.0
    assert sim.update(now) == gateway.table(now, 300.0).rounded(0.05)
