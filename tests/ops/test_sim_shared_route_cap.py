"""Near the function platform's concurrency cap, a model's free slots depend on the other
models' busy instances. The shared engine's route memo keyed a pool's state on its own pool
only, so within a tick a request could be routed on another moment's free-slot count."""

from __future__ import annotations

import numpy as np

from ops.sim import SimProfile
from ops.sim.presets import build_policies, preset_spec
from ops.sim.shared import SharedSetup, SharedSimulation
from ops.sim.shared_run import mixture_profile
from ops.traces import _build, read_trace
from policies.costs import PriceTable


def _burst_heavy():
    base = read_trace(
        "synth:mmpp:duration_s=120,low_rps=40,high_rps=400,mean_low_s=15,mean_high_s=10", seed=3
    )
    rng = np.random.default_rng(3)
    models = np.array(["resnet18", "mobilenet_v2"])[rng.integers(0, 2, len(base))]
    return _build("cap", base.arrivals_s, list(models), ["t"] * len(base))


def test_every_routed_burst_state_counts_the_other_models_busy_instances():
    trace = _burst_heavy()
    profiles = [SimProfile.reference(m).with_overrides(fn_concurrency=10) for m in trace.models]
    spec = preset_spec("slo-aware", trace, mixture_profile(trace, profiles))
    routing, scaler = build_policies(spec, PriceTable())
    setup = SharedSetup(
        profiles=profiles,
        routing=routing,
        autoscaler=scaler,
        prices=PriceTable(),
        initial_replicas=spec.initial_replicas,
    )
    sim = SharedSimulation(trace, setup)
    seen, stale = [], []
    route_state = sim._route_state

    def checked(tick_s, per, slow, lane, fn_key):
        state = route_state(tick_s, per, slow, lane, fn_key)
        fresh = sim._burst_state([lane]).free_concurrency
        seen.append(fresh)
        if state.burst.free_concurrency != fresh:
            stale.append((state.burst.free_concurrency, fresh))
        return state

    sim._route_state = checked
    sim.run()
    assert len(set(seen)) > 2  # the cap is reached and left: free slots move
    assert stale == []
