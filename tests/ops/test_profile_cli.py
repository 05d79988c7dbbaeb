"""``tidegate profile`` measures on the local function runtime and ``tidegate plan`` uses it."""

from __future__ import annotations

import json

import pytest

from ops.cli import main
from policies.profile import Profile
from vmpool.export import export_zoo


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("repo")
    export_zoo("resnet18", root, size=(32, 32), max_batch_size=2)
    return root


def test_bad_arguments_are_one_line_errors(repo, capsys):
    assert main(["profile", "nope", "--repo", str(repo)]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["profile", "resnet18", "--repo", str(repo), "--workers", "two"]) == 2
    assert "--workers" in capsys.readouterr().err
    assert main(["profile", "resnet18", "--repo", str(repo), "--cold-reps", "-1"]) == 2
    assert "--cold-reps" in capsys.readouterr().err
    assert (
        main(
            [
                "profile",
                "resnet18",
                "--repo",
                str(repo),
                "--compute-only",
                "--out",
                str(repo / "missing.json"),
            ]
        )
        == 2
    )
    assert "existing profile" in capsys.readouterr().err


@pytest.mark.slow
def test_profile_measures_and_plan_reads_it(repo, capsys):
    args = ["--workers", "2", "--reps", "2", "--cold-reps", "2", "--cold-workers", "2"]
    assert main(["profile", "resnet18", "--repo", str(repo), *args]) == 0
    out = capsys.readouterr().out
    for step in (
        "timing each node",
        "transfer dir",
        "VM service",
        "invocation round trip",
        "plan spatial x2",
        "cold start 2/2",
        "wrote",
    ):
        assert step in out, step
    profile = Profile.from_json(json.loads((repo / "resnet18" / "profile.json").read_text()))
    times = profile.models["resnet18"]
    assert times.input_shape == (1, 3, 32, 32) and len(times.node_ms) > 50
    assert set(times.vm_service_ms) == {1, 2}
    assert profile.invoke_cold_ms.median_ms > profile.invoke_ms(1).median_ms > 0
    # the model's own cold start: fresh instances import torch and load the plan's weights,
    # far beyond a no-op function's cold round trip
    cold, billed = times.cold_start(2)
    assert cold.median_ms > profile.invoke_cold_ms.median_ms and billed.median_ms > 0
    assert 2 in profile.split_slowdown.get("spatial", {})
    # measured / predicted p50 of its own plans, and the calibration fitted from them
    assert times.plan_error.get(1, 0.0) > 0
    assert "calibration: compute" in out and times.calibration.compute != 1.0
    # the host probe ran after every timed request, and the drift is read (from too few
    # probes here to tell: none)
    assert "host probe p50" in out and "host drift 0.0% (of" in out
    assert main(["plan", "resnet18", "--repo", str(repo), "--workers", "2", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    one_thread_ms = sum(times.node_ms.values())
    # the whole model's measured compute is a floor for any plan's predicted p50
    assert plan["predicted_p50_ms"] > one_thread_ms * 0.5


def test_compute_only_keeps_the_cold_start_measured_before(repo, tmp_path, capsys):
    from dataclasses import replace

    from burst.planning import load_profile
    from policies.profile import ModelTimes, Quantiles

    cold = {4: Quantiles((9000.0, 16000.0))}
    base = load_profile()
    times = ModelTimes((1, 3, 32, 32), {}, {}, cold_start_ms=cold, cold_billed_ms=cold)
    out = tmp_path / "profile.json"
    out.write_text(json.dumps(replace(base).with_model("resnet18", times).to_json()))
    args = ["--compute-only", "--reps", "2", "--vm-batches", "1", "--out", str(out)]
    assert main(["profile", "resnet18", "--repo", str(repo), *args]) == 0
    again = Profile.from_json(json.loads(out.read_text())).models["resnet18"]
    assert len(again.node_ms) > 50  # measured now
    assert again.cold_start_ms == cold and again.cold_billed_ms == cold  # kept


@pytest.mark.slow
def test_compute_only_can_calibrate_the_model_against_the_profile_it_joins(repo, tmp_path):
    """How the reference profile calibrates each zoo model: this model's plans run, its
    calibration is fitted, and the rest of the profile (round trips, slowdowns) stays."""
    from burst.planning import load_profile

    base = load_profile()
    out = tmp_path / "profile.json"
    out.write_text(json.dumps(base.to_json()))
    before = _repo_profile(repo)
    args = ["--compute-only", "--calibrate", "--workers", "2", "--reps", "2"]
    assert main(["profile", "resnet18", "--repo", str(repo), *args, "--out", str(out)]) == 0
    again = Profile.from_json(json.loads(out.read_text()))
    times = again.models["resnet18"]
    assert times.input_shape == (1, 3, 32, 32) and times.plan_error.get(1, 0.0) > 0
    assert times.calibration.compute != 1.0
    assert again.invoke_warm_ms == base.invoke_warm_ms
    assert again.split_slowdown == base.split_slowdown
    assert _repo_profile(repo) == before  # the user's repository is not written
    assert main(["profile", "resnet18", "--repo", str(repo), "--calibrate"]) == 2


def _repo_profile(repo) -> str | None:
    path = repo / "resnet18" / "profile.json"
    return path.read_text() if path.exists() else None
