"""Synthetic generators with random parameters (issue 10, item 1 as the simulator reads it):
every ``synth:KIND:k=v,...`` gives a sorted trace at about the rate it names, or one
``TraceError`` line; nothing else."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from ops.trace_synth import GENERATORS
from ops.traces import TraceError, read_trace

VALUES = ["0", "0.001", "0.5", "1", "2", "10", "59.9", "61", "300", "-1", "nan", "inf", "x"]


def random_spec(rng) -> str:
    kind = str(rng.choice(sorted(GENERATORS)))
    names = [p for p in inspect.signature(GENERATORS[kind]).parameters if p != "seed"]
    chosen = rng.choice(names, size=int(rng.integers(1, len(names) + 1)), replace=False)
    parts = [f"{k}={VALUES[int(rng.integers(len(VALUES)))]}" for k in chosen]
    if "duration_s" not in chosen:  # (the defaults are an hour to a day: slow for a test)
        parts.append("duration_s=120")
    return f"synth:{kind}:{','.join(parts)}"


@pytest.mark.parametrize("seed", range(4))
def test_a_random_synthetic_spec_is_a_trace_or_one_line(seed):
    rng = np.random.default_rng(seed)
    for _ in range(60):
        spec = random_spec(rng)
        try:
            trace = read_trace(spec, seed=seed)
        except TraceError as exc:
            assert "\n" not in str(exc) and str(exc), spec
            continue
        t = trace.arrivals_s
        assert len(trace) > 0 and np.all(np.diff(t) >= 0) and t[0] >= 0, spec
        assert len(trace) < 2_000_000, spec  # (120 s at the rates above)


@pytest.mark.parametrize("seed", range(5))
def test_diurnal_bursts_that_overlap_are_not_multiplied_together(seed):
    """6 bursts of a minute in 2 minutes overlapped and multiplied: 4^6 x the rate, 422,942
    requests where at most ~4 x 2 x 20/s x 120 s can be expected."""
    trace = read_trace("synth:diurnal:duration_s=120,burst_s=59.9", seed=seed)
    mean_rps, peak_to_trough, burst_mult = 20.0, 3.0, 4.0  # (the generator's defaults)
    peak = mean_rps * 2 * peak_to_trough / (peak_to_trough + 1) * burst_mult
    assert len(trace) <= peak * 120
