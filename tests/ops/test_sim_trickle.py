"""Load that functions serve for less than a VM (below the break-even rate: a VM's price over a
spilled request's) and within the SLO: slo-aware keeps no VM for it, from the start of a run
and once a burst's VMs are no longer needed."""

from __future__ import annotations

from ops.sim import SimProfile, simulate
from ops.sim.presets import preset_spec
from ops.traces import read_trace

TRICKLE = "synth:steady:duration_s=600,rps=5"
# 20 req/s (below mlp's break-even), 20x for 5 minutes, then 20 req/s for 23 minutes
STEP = "synth:step:duration_s=1800,base_rps=20,mult=20,start_s=120,step_s=300"


def _run(src: str, model: str, policy: str = "slo-aware"):
    return simulate(read_trace(src, seed=0), policy, SimProfile.reference(model), seed=0)


def test_a_trickle_starts_and_stays_on_functions():
    """The run began with one VM (what carries the first boot time's load) and slo-aware kept
    it 300 s before its regret let it go: ResNet-18 at 5 req/s cost 1.7x the optimum."""
    for model in ("resnet18", "mlp"):
        aware, burst = _run(TRICKLE, model), _run(TRICKLE, model, "burst-only")
        assert aware.summary["vm_hours"] == 0.0
        assert aware.summary["cost_usd"] <= 1.05 * burst.summary["cost_usd"]
        assert aware.summary["slo_attainment"] >= 0.99


def test_policies_that_keep_a_vm_still_start_with_one():
    trace = read_trace(TRICKLE, seed=0)
    profile = SimProfile.reference("resnet18")
    assert preset_spec("threshold", trace, profile).initial_replicas == 1
    assert preset_spec("vm-reactive", trace, profile).initial_replicas == 1
    assert preset_spec("slo-aware", trace, profile).initial_replicas == 0
    # a functions-missed SLO: a VM pays for any load, so the run starts with one
    tight = profile.with_overrides(slo_ms=80.0)
    assert preset_spec("slo-aware", trace, tight).initial_replicas == 1


def test_the_last_vm_goes_once_the_load_left_is_cheaper_spilled():
    """After a step's VMs, mlp's 20 req/s (a quarter of a VM's price spilled) kept one VM to
    the end: the forecast asked ceil(rate / capacity) = 1 for any load over a running VM."""
    result = _run(STEP, "mlp")
    ready = result.timeline.vm_ready
    assert max(ready) >= 1  # the step did get a VM
    assert ready[-1] == 0 and ready[len(ready) * 3 // 4] == 0
    assert result.summary["slo_attainment"] >= 0.99
