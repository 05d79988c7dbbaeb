"""The learnt batch-time curve holds still through a noisy neighbour and follows a real slowdown.

Session 25's loaded run: an EWMA per batch size moved with every late batch, and the fleet
sizing rate the predictive scaler reads moved 72-81 req/s tick to tick (the simulator's fixed
profile: 79-81)."""

from __future__ import annotations

import random

from gateway.batch_curve import MIN_KEEP, WINDOW_S
from gateway.live import LiveCollector
from policies.autoscaling.slo_capacity import fleet_sizing_rate_per_s
from vmpool.batch_report import BatchReport

B8_MS = 44.0  # the delay model at 20 ms + 3 ms a row, eight rows
TRUE_RATE = 8 / B8_MS * 1e3 * 0.7  # what the scaler sizes a replica at (utilization 0.7)


class _Clock:
    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


def _collector() -> tuple[LiveCollector, _Clock]:
    clock = _Clock()
    live = LiveCollector(pool=None, burst=None, model_slos_ms={"m": 250.0}, clock=clock)
    return live, clock


def _sizing_rate(live: LiveCollector) -> float:
    stats = live.snapshot(fresh=True).models["m"]
    return fleet_sizing_rate_per_s([stats], 8, 0.7)


def _report(live: LiveCollector, rows: int, ms: float) -> None:
    live.on_vm_answer("m", 1, ms, queued_ahead=rows - 1, reported=BatchReport(rows, ms))


def test_one_late_batch_does_not_move_the_sizing_rate():
    live, _ = _collector()
    for _ in range(MIN_KEEP):
        _report(live, 8, B8_MS)
    _report(live, 8, 129.0)  # one wake-up 85 ms late (the EWMA moved 17 ms on it)
    assert _sizing_rate(live) == TRUE_RATE


def test_a_noisy_neighbour_moves_the_sizing_rate_by_under_a_request_a_second():
    """A fifth of the batches 5-60 ms late, at random; 20 batches a second, a tick a second
    (an EWMA of 0.2 a batch moved this 84-126 req/s, 40 in one tick; the median of the last 16
    batches 97-126)."""
    rng, (live, clock) = random.Random(7), _collector()
    rates = []
    for tick in range(120):
        for k in range(20):
            clock.now_s = tick + k / 20
            late = rng.uniform(5.0, 60.0) if rng.random() < 0.2 else rng.uniform(0.0, 1.0)
            _report(live, 8, B8_MS + late)
        rates.append(_sizing_rate(live))
    steps = [abs(b - a) for a, b in zip(rates, rates[1:])]
    assert max(steps[5:]) < 1.0, max(steps[5:])
    # (the median of a minute where a fifth of the batches ran late: ~0.6 ms over, ~1.5 %)
    assert all(TRUE_RATE - 3.0 < r <= TRUE_RATE for r in rates[5:]), (min(rates), TRUE_RATE)


def test_a_replica_that_really_slowed_is_followed_once_half_the_window_shows_it():
    live, clock = _collector()
    for k in range(int(WINDOW_S) * 10):  # a minute at 10 batches a second
        clock.now_s = k / 10
        _report(live, 8, B8_MS)
    start_s = clock.now_s
    for k in range(int(WINDOW_S) * 10):  # then twice as slow, for good
        clock.now_s = start_s + k / 10
        _report(live, 8, 2 * B8_MS)
        if clock.now_s - start_s < 0.45 * WINDOW_S:
            assert _sizing_rate(live) == TRUE_RATE
    assert _sizing_rate(live) == TRUE_RATE / 2


def test_a_size_seen_rarely_keeps_its_point_and_each_size_is_its_own():
    live, clock = _collector()
    for ms in (30.0, 31.0, 90.0):
        _report(live, 2, ms)
    for ms in (20.0, 24.0):
        _report(live, 1, ms)
    clock.now_s = 10 * WINDOW_S  # long after: nothing newer replaced them
    # (the median of two: the upper)
    assert live.snapshot(fresh=True).models["m"].vm_service_ms_by_batch == ((1, 24.0), (2, 31.0))
