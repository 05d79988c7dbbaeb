"""heldout23's bound for a burst after hours of silence (``ops/bench/heldout23_bound.py``)."""

from __future__ import annotations

import numpy as np

from ops.bench import heldout23_bound, heldout_rand4


def test_the_silence_and_the_bursts_start_are_found():
    lead = np.arange(0.0, 600.0, 0.25)  # 4 req/s
    trickle = 5000.0 + np.arange(0.0, 30.0, 2.0)  # the step's 0.5 req/s lead-in
    burst = 5030.0 + np.arange(0.0, 60.0, 0.01)  # 100 req/s
    silence_s, start = heldout23_bound.burst_window(np.concatenate([lead, trickle, burst]))
    assert silence_s == 5000.0 - lead[-1]
    assert start == 5030.0


def test_vms_held_through_the_silence_lower_the_bound_and_bill_the_silence(tmp_path):
    run = next(r for r in heldout_rand4.rand4() if r.name.endswith(" s23"))
    rows = heldout23_bound.bound_rows(run, tmp_path, max_k=5)
    misses = [r["min_misses"] for r in rows]
    assert misses[0] > 0.01 * rows[0]["requests"]  # no VM held: 99 % is out of reach
    assert misses == sorted(misses, reverse=True) and misses[-1] == 0.0
    assert rows[2]["hold_usd"] == 2 * rows[1]["hold_usd"] > 0
