"""The simulator's function time for a measured plan is the warm time the profile measured, where
calibration could not bring the plan's prediction up to it.

The delay model waits (20 ms + 3 ms a row) rather than computes, so its node times (thread CPU
time) see almost nothing; `tidegate profile` measured its one-function plan at 27 ms warm, but
calibration's compute scale stops at 2x, and the simulator ran its functions at 3.7 ms (7.4 ms
with the gateway's own time, against 30 ms live). Burst requests then left the in-flight count
the target-tracking scaler reads 4x sooner than live ones, and cost a seventh of their bill.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from ops.sim.profile_adapter import from_repo
from policies.calibration import Calibration
from policies.profile import ModelTimes, Profile, Quantiles
from vmpool.export import export_zoo

BUNDLED = Path(__file__).resolve().parents[2] / "policies/data/reference_profile.json"
MEASURED_WARM_MS = 27.0


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("svr23") / "repo"
    export_zoo("delay", root, options={"delay_ms": 20.0, "per_item_ms": 3.0})
    return root


def _simulated(repo: Path, calibration: Calibration, plan_error: dict[int, float]):
    """The simulated profile of delay with a measured profile of these figures."""
    bundled = Profile.from_json(json.loads(BUNDLED.read_text()))
    curve = {b: Quantiles.from_samples([20.0 + 3.0 * b]) for b in (1, 2, 4, 8)}
    times = ModelTimes(
        input_shape=(1, 16),
        node_ms={"delay": 0.2},
        vm_service_ms=curve,
        plan_error=plan_error,
        calibration=calibration,
    )
    measured = replace(bundled.with_model("delay", times), measured_models=("delay",))
    path = repo / "delay" / "profile.json"
    path.write_text(json.dumps(measured.to_json()))
    try:
        return from_repo(repo, "delay")
    finally:
        path.unlink()


def test_functions_take_the_warm_time_measured_where_calibration_fell_short(repo):
    raw = _simulated(repo, Calibration(), {})  # the plan as modelled, nothing measured
    capped = Calibration(compute=2.0)  # what calibration reached (its cap)
    calibrated = _simulated(repo, capped, {})
    assert calibrated.burst_p50_ms < MEASURED_WARM_MS / 3  # what the simulator ran before
    error = MEASURED_WARM_MS / raw.burst_p50_ms  # measured / predicted before calibration
    got = _simulated(repo, capped, {1: error})
    assert got.burst_workers == 1
    assert got.burst_p50_ms == pytest.approx(MEASURED_WARM_MS, rel=1e-4)
    # the time it waited is billed: the function's bill grows by the same milliseconds
    short_ms = MEASURED_WARM_MS - calibrated.burst_p50_ms
    assert got.burst_billed_ms == pytest.approx(calibrated.burst_billed_ms + short_ms, rel=1e-4)
    assert got.burst_sigma == pytest.approx(calibrated.burst_sigma)


def test_a_calibration_that_reached_the_measurement_is_kept(repo):
    """Where calibration brought the prediction to the measured time (or past it), the
    calibrated plan stands: the measurement is not counted twice."""
    raw = _simulated(repo, Calibration(), {})
    scale = Calibration(compute=2.0)
    calibrated = _simulated(repo, scale, {})
    error = calibrated.burst_p50_ms / raw.burst_p50_ms * 0.9  # measured a little under
    got = _simulated(repo, scale, {1: error})
    assert got.burst_p50_ms == pytest.approx(calibrated.burst_p50_ms)
    assert got.burst_billed_ms == pytest.approx(calibrated.burst_billed_ms)
