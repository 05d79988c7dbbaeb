"""The shared fleet's routing memo (speed, session 25): decisions keyed on the queue summary the
policy reads and carried over ticks while what it reads of every model's statistics holds, as
the one-model engine does. Every request must still get what keying on whole snapshots, tick
by tick, gives it; and the policy is asked less often."""

from __future__ import annotations

import numpy as np
import pytest

from ops.sim import SimProfile
from ops.sim.presets import build_policies, preset_spec
from ops.sim.shared import SharedSetup, SharedSimulation
from ops.sim.shared_run import mixture_profile
from ops.traces import _build, read_trace
from policies.costs import PriceTable


def _two_models(seed: int = 2):
    """An MMPP trace split at random over two models and two tenants: bursts make the fleet
    boot and drain replicas, so every part of the route key moves."""
    base = read_trace(
        "synth:mmpp:duration_s=300,low_rps=80,high_rps=600,mean_low_s=40,mean_high_s=20",
        seed=seed,
    )
    rng = np.random.default_rng(seed)
    models = np.array(["resnet18", "mobilenet_v2"])[rng.integers(0, 2, len(base))]
    tenants = np.array(["a", "b"])[rng.integers(0, 2, len(base))]
    return _build("two", base.arrivals_s, list(models), list(tenants))


@pytest.fixture(scope="module")
def two():
    trace = _two_models()
    return trace, [SimProfile.reference(m) for m in trace.models]


def _run(trace, profiles, preset: str, exact: bool, calls: list | None = None):
    spec = preset_spec(preset, trace, mixture_profile(trace, profiles))
    routing, scaler = build_policies(spec, PriceTable())
    if calls is not None:  # count the policy's answers (the real policy answers each)
        route = routing.route

        def counted(request, state):
            calls.append(1)
            return route(request, state)

        object.__setattr__(routing, "route", counted)
    setup = SharedSetup(
        profiles=profiles,
        routing=routing,
        autoscaler=scaler,
        prices=PriceTable(),
        initial_replicas=spec.initial_replicas,
        exact_route_keys=exact,
    )
    return SharedSimulation(trace, setup).run()


@pytest.mark.parametrize("preset", ["slo-aware", "threshold"])
def test_shared_route_memo_gives_exactly_the_decisions_of_whole_snapshots(two, preset):
    trace, profiles = two
    exact, fast = (_run(trace, profiles, preset, e) for e in (True, False))
    assert exact.summary["peak_vm_replicas"] >= 3  # the queue summary is exercised
    assert exact.summary["requests_burst"] > 0
    np.testing.assert_array_equal(exact.latency_ms, fast.latency_ms)
    np.testing.assert_array_equal(exact.path, fast.path)
    assert exact.summary == fast.summary


def test_slo_aware_on_a_shared_fleet_is_asked_less_often_than_once_per_snapshot(two):
    """Before session 25 the shared engine dropped every decision each tick and keyed on the
    whole queue tuple: as many policy calls as the exact keying."""
    trace, profiles = two
    exact_calls: list = []
    fast_calls: list = []
    _run(trace, profiles, "slo-aware", True, exact_calls)
    _run(trace, profiles, "slo-aware", False, fast_calls)
    assert len(fast_calls) < 0.75 * len(exact_calls)  # (0.71: the other pools key it too)
