"""The shared fleet of a gateway serving several models (`tidegate simulate --fleet shared`, the
default on a trace of several models): one replica serves one model's load in another's lull,
a replica computing one model's batch delays the other's, and a trace of one model simulates
as the single-model engine does."""

from __future__ import annotations

import numpy as np
import pytest

from ops.commands.simulate_models import merge
from ops.sim import SimProfile, simulate
from ops.sim.shared_run import simulate_shared
from ops.sim.shared_vm import SharedVmPool
from ops.traces import _build, read_trace


def _out_of_phase(periods: int = 4, period_s: float = 300.0, rps: float = 40.0, seed: int = 0):
    """Two models, each busy (``rps``) in its half of every period and at 1 req/s otherwise."""
    rng = np.random.default_rng(seed)
    arr, models = [], []
    for k in range(periods):
        t0 = k * period_s
        for m, name in enumerate(("resnet18", "mobilenet_v2")):
            busy_from = t0 + m * period_s / 2
            for start, end, rate in (
                (t0, t0 + period_s, 1.0),
                (busy_from, busy_from + period_s / 2, rps),
            ):
                ts = rng.uniform(start, end, rng.poisson(rate * (end - start)))
                arr += ts.tolist()
                models += [name] * len(ts)
    order = np.argsort(arr, kind="stable")
    return _build("phase", np.asarray(arr)[order], [models[i] for i in order], ["t"] * len(arr))


@pytest.fixture(scope="module")
def phased():
    trace = _out_of_phase()
    return trace, [SimProfile.reference(m) for m in trace.models]


def _per_model(trace, profiles, preset: str) -> dict:
    subs = [trace.only_model(m) for m in trace.models]
    runs = [simulate(s, preset, p) for s, p in zip(subs, profiles, strict=True)]
    return merge(runs, subs, trace).summary


@pytest.mark.parametrize("preset", ["vm-peak", "slo-aware"])
def test_a_shared_fleet_lends_one_models_idle_replica_to_the_other(phased, preset):
    trace, profiles = phased
    shared = simulate_shared(trace, preset, profiles).summary
    apart = _per_model(trace, profiles, preset)
    assert shared["requests"] == apart["requests"] == len(trace)
    # one fleet carries both peaks in turn: at most ~60 % of two fleets' bill, same SLO met
    assert shared["cost_usd"] < 0.6 * apart["cost_usd"]
    assert shared["vm_hours"] < apart["vm_hours"]
    assert shared["slo_attainment"] >= min(apart["slo_attainment"], 0.99) - 0.005
    # each model's own summary under models; their VM shares add up to the fleet's
    assert set(shared["models"]) == set(trace.models)
    vm = sum(m["vm_usd"] for m in shared["models"].values())
    assert vm == pytest.approx(shared["vm_usd"])


def test_the_shared_bound_is_below_the_shared_runs_where_the_per_model_sum_is_not(phased):
    trace, profiles = phased
    bound = simulate_shared(trace, "optimum", profiles).summary
    runs = [simulate_shared(trace, p, profiles).summary for p in ("vm-peak", "slo-aware")]
    assert all(bound["cost_usd"] <= r["cost_usd"] for r in runs)
    assert "shared-fleet bound" in bound["bound"]
    summed = _per_model(trace, profiles, "optimum")["cost_usd"]
    assert min(r["cost_usd"] for r in runs) < summed  # (why the sum is no bound here)


def _pool(compute_b: bool):
    a = SimProfile(model="a", vm_service_ms_by_batch=((1, 100.0),), vm_service_cv=0.0)
    b = SimProfile(model="delay" if not compute_b else "b", vm_service_ms_by_batch=((1, 10.0),))
    b = b.with_overrides(vm_service_cv=0.0)
    for p in (a, b):
        assert p.gateway_overhead_ms == 1.5
    arr, lat = [0.0, 0.01], [0.0, 0.0]
    pool = SharedVmPool([a, b], arr, lat, [0, 0], [0, 1], 1, np.random.default_rng(0))
    replica = pool.launch(0.0, 0.0)
    pool.enqueue(replica, 0, 0)
    pool.advance(0.005)  # model a's batch has started
    pool.enqueue(replica, 1, 1)
    pool.finish(1.0)
    return lat


def test_a_replica_computing_one_models_batch_delays_the_others():
    lat = _pool(compute_b=True)
    assert lat[0] == pytest.approx(101.5)
    # b arrived 10 ms into a's 100 ms batch: it waits the 90 ms left, then its own 10 ms
    assert lat[1] == pytest.approx(90.0 + 10.0 + 1.5)


def test_a_model_that_only_waits_runs_beside_the_others():
    lat = _pool(compute_b=False)  # (the delay model sleeps: no core taken)
    assert lat[1] == pytest.approx(10.0 + 1.5)


@pytest.mark.parametrize("preset", ["threshold", "slo-aware", "optimum"])
def test_a_trace_of_one_model_simulates_as_the_single_model_engine(preset):
    trace = read_trace(
        "synth:mmpp:duration_s=600,low_rps=30,high_rps=300,mean_low_s=60,mean_high_s=15", seed=2
    )
    profile = SimProfile()
    one = simulate(trace, preset, profile).summary
    shared = simulate_shared(trace, preset, [profile]).summary
    for key in ("slo_attainment", "cost_usd", "vm_hours", "requests_burst", "cold_starts"):
        assert shared[key] == pytest.approx(one[key], rel=1e-12, abs=1e-12), key


def test_the_models_functions_share_the_platforms_concurrency_cap():
    """One function platform serves every model (the gateway's one gate): model a holding both
    of 2 slots leaves model b one group (its first), and b's second request is throttled."""
    from ops.sim.shared_lane import PlatformPool

    profile = SimProfile(fn_concurrency=2, burst_workers=1, burst_instances=1)
    a, b = PlatformPool(profile, 1), PlatformPool(profile.with_overrides(model="b"), 2)
    a.peers = b.peers = [a, b]
    assert a.cap_groups == b.cap_groups == 2
    a.serve(0.0)
    a.serve(0.0)
    assert b.cap_groups == 1  # (none free: b may start one group, no more)
    first = b.serve(0.0)
    assert first is not None and b.throttled == 0
    second = b.serve(0.0)
    assert b.throttled == 1 and second[0] > first[0]  # it waited for b's group
