"""vm-peak on a shared fleet is sized by the busiest second of replica time, each request
weighed by its own model's capacity within its own SLO. It was sized with the models' mixed
batch times at the tightest SLO: a fast model with a tight SLO beside a slow one asked for
many times the VMs one fleet per model needs (54 against 8 on a held-out trace)."""

from __future__ import annotations

import numpy as np

from ops.sim import SimProfile
from ops.sim.presets import peak_replicas, start_capacity_per_s
from ops.sim.shared_run import mixture_profile, shared_peak_replicas, simulate_shared
from ops.traces import _build


def _trace(spans):
    """``spans``: (model, start_s, end_s, rps), arrivals evenly spaced."""
    arr, models = [], []
    for model, start, end, rps in spans:
        n = int((end - start) * rps)
        arr += np.linspace(start, end, n, endpoint=False).tolist()
        models += [model] * n
    order = np.argsort(arr, kind="stable")
    return _build("t", np.asarray(arr)[order], [models[i] for i in order], ["t"] * len(arr))


def _profiles(trace):
    return [SimProfile.reference(m) for m in trace.models]


def test_peaks_apart_share_replicas_and_peaks_together_add_up():
    apart = _trace(
        [("mlp", 0, 60, 5), ("resnet50", 0, 60, 2), ("resnet50", 100, 110, 60)]
        + [("mlp", 200, 210, 600)]
    )
    profiles = _profiles(apart)
    each = [peak_replicas(apart.only_model(m), p) for m, p in zip(apart.models, profiles)]
    assert shared_peak_replicas(apart, profiles) == max(each) < sum(each)
    together = _trace([("mlp", 100, 110, 600), ("resnet50", 100, 110, 60)])
    profiles = _profiles(together)
    rps = {"mlp": 600, "resnet50": 60}
    need = sum(rps[m] / start_capacity_per_s(p) for m, p in zip(together.models, profiles))
    assert shared_peak_replicas(together, profiles) == int(np.ceil(need - 1e-9))


def test_a_tight_fast_model_beside_a_slow_one_is_not_sized_at_the_tightest_slo():
    trace = _trace([("mlp", 0, 60, 100), ("resnet50", 0, 60, 30)])
    slo = {"mlp": 19.0, "resnet50": 171.0}  # a held-out mix (rand4 s18's two of three)
    profiles = [p.with_overrides(slo_ms=slo[p.model]) for p in _profiles(trace)]
    mixed = peak_replicas(trace, mixture_profile(trace, profiles))  # the old sizing
    each = [peak_replicas(trace.only_model(m), p) for m, p in zip(trace.models, profiles)]
    shared = shared_peak_replicas(trace, profiles)
    assert shared <= sum(each) and shared < mixed


def test_the_shared_vm_peak_runs_that_fleet_and_meets_the_slo():
    trace = _trace([("mlp", 0, 120, 50), ("resnet50", 0, 120, 5), ("resnet50", 60, 70, 40)])
    profiles = _profiles(trace)
    run = simulate_shared(trace, "vm-peak", profiles).summary
    n = shared_peak_replicas(trace, profiles)
    assert run["vm_hours"] >= n * 120 / 3600 - 1e-9
    assert run["slo_attainment"] >= 0.99
