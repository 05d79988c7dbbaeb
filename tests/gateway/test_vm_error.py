"""The learnt VM prediction error: follows observed/predicted, does not feed on itself."""

from __future__ import annotations

import pytest

from gateway.live import LatencyWindow
from gateway.vm_error import MIN_RATIO_SAMPLES, PREDICTION_WINDOW_S, PredictionError
from policies.state import ManualClock


def test_the_factor_learns_the_ratio_and_is_not_compounded_by_its_own_scaling():
    clock = ManualClock(100.0)
    error = PredictionError(LatencyWindow(PREDICTION_WINDOW_S))
    assert error.factor(clock.now()) == 1.0  # nothing learnt yet
    raw_ms = 4000.0
    for _ in range(MIN_RATIO_SAMPLES):  # the VM path runs 1.5x over the queue model
        clock.advance(0.5)
        error.on_answer(clock.now(), predicted_ms=raw_ms, path_ms=1.5 * raw_ms)
    factor = error.factor(clock.now())
    assert factor == pytest.approx(1.5)
    # routing now predicts 1.5x; the same host keeps the same error: the factor stays put
    clock.advance(10.0)
    for _ in range(3 * MIN_RATIO_SAMPLES):
        clock.advance(0.5)
        error.on_answer(clock.now(), predicted_ms=factor * raw_ms, path_ms=1.5 * raw_ms)
        error.factor(clock.now())
    assert error.factor(clock.now()) == pytest.approx(1.5)


def test_the_factor_is_bounded_and_forgets_an_old_overload():
    clock = ManualClock(0.0)
    error = PredictionError(LatencyWindow(PREDICTION_WINDOW_S))
    for _ in range(MIN_RATIO_SAMPLES):
        clock.advance(0.1)
        error.on_answer(clock.now(), predicted_ms=1000.0, path_ms=9000.0)
    assert error.factor(clock.now()) == 2.0
    clock.advance(PREDICTION_WINDOW_S + 1.0)
    assert error.factor(clock.now()) == 1.0
    error.on_answer(clock.now(), predicted_ms=float("inf"), path_ms=50.0)  # ignored
    error.on_answer(clock.now(), predicted_ms=None, path_ms=50.0)
    assert error.factor(clock.now()) == 1.0
