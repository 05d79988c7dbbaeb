"""ops/bench/sim_vs_real_live25.py: a kept run's control record replayed through a fresh scaler."""

from __future__ import annotations

import bisect

from ops.bench.sim_vs_real_live25 import trace_offset_s


def test_the_trace_start_is_found_from_the_recorded_rates():
    # arrivals 20/s, then 140/s from 30 s to 60 s; the gateway's clock read 5000 s at its first
    # tick and the replay began 17.5 s later
    arrivals = [i / 20 for i in range(600)] + [30 + i / 140 for i in range(140 * 30)]
    arrivals.sort()
    records = []
    for k in range(100):
        t = k - 17.5  # trace time of the tick
        count = bisect.bisect_right(arrivals, t) - bisect.bisect_right(arrivals, t - 10)
        records.append({"now_s": 5000.0 + k, "arrival_rate_per_s": count / 10})
    assert abs(trace_offset_s(records, arrivals) - 5017.5) < 0.06
