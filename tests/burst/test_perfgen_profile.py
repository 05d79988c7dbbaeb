"""``tidegate profile``'s compute step writes the bytes-aware fit: per op kind, from the model's
own nodes and the probe layers, and it survives the profile file."""

from __future__ import annotations

import pytest

from ops.commands.profile_measure import measure_compute
from policies.profile import Profile
from vmpool.export import export_zoo


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    artifact = export_zoo("mlp", tmp_path_factory.mktemp("repo"))
    said: list[str] = []
    graph, times, fit, _ = measure_compute(artifact, 2, [1], said.append)
    return graph, times, fit, said


def test_the_profile_carries_a_fit_for_each_kind_a_user_model_may_have(measured):
    _, _, fit, said = measured
    for kind in ("conv", "linear", "attention", "norm", "copy", "view", "elementwise"):
        assert kind in fit.kinds, kind
    assert "silu" in fit.kinds  # an op the probes saw large enough: its own
    assert any(line.startswith("compute probes:") for line in said)


def test_the_fit_is_written_and_read_back(measured):
    from burst.planning import load_profile

    _, times, fit, _ = measured
    base = load_profile()
    profile = Profile(**{**base.__dict__, "compute": fit}).with_model("mlp", times)
    again = Profile.from_json(profile.to_json())
    assert {k: f.to_json() for k, f in again.compute.kinds.items()} == {
        k: f.to_json() for k, f in fit.kinds.items()
    }
    assert again.compute.ms("aten.linear.default", 10**6, 10**5, 10**6) == pytest.approx(
        fit.ms("aten.linear.default", 10**6, 10**5, 10**6), rel=1e-3
    )
