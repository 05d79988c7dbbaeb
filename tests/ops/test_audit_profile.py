"""``tidegate simulate --profile FILE`` with a profile kept outside a model repository (as an
ops person copies it around): its measurements are looked up by the trace's model."""

from __future__ import annotations

import json
from pathlib import Path

from ops.cli import main

REFERENCE = Path(__file__).resolve().parents[2] / "policies" / "data" / "reference_profile.json"


def _files(tmp_path):
    raw = json.loads(REFERENCE.read_text())
    raw["models"] = {"mlp": raw["models"]["mlp"]}  # a profile of mlp alone (VM batch ~0.5 ms)
    raw["measured_models"] = ["mlp"]  # as `tidegate profile mlp` records it
    profile = tmp_path / "profiles" / "mlp-2026-11.json"
    profile.parent.mkdir()
    profile.write_text(json.dumps(raw))
    trace = tmp_path / "mlp.csv"
    trace.write_text("".join(f"{i * 0.05:.2f},mlp\n" for i in range(1200)))
    return profile, trace


def test_a_profile_outside_a_repo_is_used_for_the_traces_model(tmp_path, capsys):
    """Without --model the profile was looked up under its directory's name ('profiles'), found
    nothing, and the reference's resnet18 VM times (13.8 ms) were simulated under its name."""
    profile, trace = _files(tmp_path)
    out = tmp_path / "run.json"
    argv = ["simulate", "--trace", str(trace), "--profile", str(profile), "--policy", "vm-peak"]
    assert main([*argv, "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["model"] == "mlp" and doc["p50_ms"] < 5.0, doc["p50_ms"]
    assert "burst path" in capsys.readouterr().err  # says what it took from the profile


def test_a_profile_without_the_model_is_one_line(tmp_path, capsys):
    profile, _ = _files(tmp_path)
    other = tmp_path / "r.csv"
    other.write_text("0.0,resnet18\n0.5,resnet18\n")
    assert main(["simulate", "--trace", str(other), "--profile", str(profile)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "no measurements for model 'resnet18'" in err and "mlp" in err
