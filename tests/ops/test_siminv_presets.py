"""vm-peak meets the SLO at 100 % where the SLO can be met (issue 10, item 2), and burst-only
never boots a VM. vm-peak is sized by the busiest second starting at any arrival
(``presets.peak_replicas``; it was the busiest fixed 1 s bin, and a burst that straddled two bins
got 3 VMs and 94.7 % where 4 meet the SLO). 300 requests at one instant are still sized by their
1 s rate (3 VMs, 46.4 %; 8 meet it): a strict xfail."""

from __future__ import annotations

import numpy as np
import pytest

from ops.sim import SimProfile, simulate
from ops.traces import Trace

PROFILE = SimProfile.reference()


def trace_of(name: str, t) -> Trace:
    t = np.sort(np.asarray(t, dtype=np.float64))
    z = np.zeros(t.size, np.int32)
    return Trace(name, t - t[0], z, z, ("resnet18",), ("default",))


def fixed_fleet(trace: Trace, replicas: int) -> dict:
    fleet = {f"autoscaling.{k}": replicas for k in ("replicas", "min_replicas", "max_replicas")}
    return simulate(trace, "vm-peak", PROFILE, params=fleet).summary


def straddling() -> Trace:
    """545 requests within one second that starts at 20.5 s: 299 in the busiest 1 s bin."""
    rng = np.random.default_rng(0)
    return trace_of("straddle", np.r_[rng.uniform(0, 20, 20), 20.5 + rng.uniform(0, 1, 545)])


def at_one_instant() -> Trace:
    rng = np.random.default_rng(0)
    return trace_of("instant", np.r_[np.zeros(300), rng.uniform(0, 30, 30)])


@pytest.mark.parametrize(
    "make, enough",
    [
        (straddling, 4),
        pytest.param(
            at_one_instant,
            8,
            marks=pytest.mark.xfail(
                strict=True, reason="a spike shorter than a second is sized by its 1 s rate"
            ),
        ),
    ],
)
def test_vm_peak_meets_the_slo_where_a_fixed_fleet_does(make, enough):
    trace = make()
    assert fixed_fleet(trace, enough)["slo_attainment"] == 1.0  # the SLO can be met
    got = simulate(trace, "vm-peak", PROFILE).summary
    # measured: 3 VMs at 94.7 % (straddling), 3 VMs at 46.4 % (300 at one instant)
    assert got["slo_attainment"] == 1.0


@pytest.mark.parametrize("make", [straddling, at_one_instant])
def test_burst_only_boots_no_vm_whatever_the_burst(make):
    got = simulate(make(), "burst-only", PROFILE).summary
    assert got["vm_hours"] == got["vm_usd"] == got["requests_vm"] == got["peak_vm_replicas"] == 0
    assert got["requests_burst"] + got["rejected"] == got["requests"]
