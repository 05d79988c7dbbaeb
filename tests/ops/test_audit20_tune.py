"""Audit 20: ``tidegate tune`` searches parameters that matter, within the config's bounds.

Every parameter a preset's search space names moves the simulation: vm-reactive searched
``target_in_flight_per_replica``, which its scaler does not read (the preset tracks the request
rate, SageMaker's way), so a third of its search was in vain and the tuned value did nothing
once served; it searches ``target_rps_per_replica`` now.

``tidegate tune --config`` keeps the config's ``[autoscaling] max_replicas``: before, an operator's cap (a VM quota of 2) was ignored: every trial simulated the preset's own
bound (8, or twice the trace's peak), and the snippet wrote ``max_replicas = 8`` over it, so
``tidegate serve --config snippet`` ran a fleet four times the quota.
"""

from __future__ import annotations

import json
import tomllib

import pytest

from gateway.settings import Settings
from ops.cli import main
from ops.sim import SimProfile, preset_spec, run_spec
from ops.traces import read_trace
from ops.tune import SPACES, bounds, tune

# peaks of 300 req/s: a fleet of several VMs for the peak
TRACE = "synth:mmpp:duration_s=600,low_rps=20,high_rps=300,mean_low_s=120,mean_high_s=40"
SHORT = "synth:mmpp:duration_s=300,low_rps=20,high_rps=300,mean_low_s=60,mean_high_s=30"


@pytest.mark.parametrize("policy", ["threshold", "slo-aware"])
def test_the_configs_cap_is_kept_by_trials_and_snippet(tmp_path, capsys, policy):
    config = tmp_path / "serve.toml"
    config.write_text('[autoscaling]\npolicy = "target"\nmin_replicas = 1\nmax_replicas = 2\n')
    out, summary = tmp_path / "tuned.toml", tmp_path / "tune.json"
    argv = ["tune", "--trace", TRACE, "--policy", policy, "--trials", "4", "--config"]
    argv += [str(config), "--slo-attainment", "0.5", "--out", str(out), "--json", str(summary)]
    assert main(argv) == 0, capsys.readouterr().err
    snippet = tomllib.loads(out.read_text())
    assert snippet["autoscaling"]["max_replicas"] == 2
    assert snippet["autoscaling"]["min_replicas"] <= 2
    trials = json.loads(summary.read_text())["trials"]
    assert all(t["params"]["autoscaling.min_replicas"] <= 2 for t in trials)
    served = Settings.load(str(out), data_dir=tmp_path / "data")
    assert served.autoscaling.max_replicas == 2


def test_trials_simulate_the_capped_fleet():
    """The cap reaches the simulation: capped at one VM, the same trials spill more."""
    trace, profile = read_trace(TRACE), SimProfile.reference()
    free = tune(trace, "threshold", profile, target=0.5, trials=1, seed=3)
    capped = tune(trace, "threshold", profile, target=0.5, trials=1, seed=3, max_replicas=1)
    assert free.trials[0].params == capped.trials[0].params  # the preset's own, both
    assert capped.best_spec.autoscaling_params["max_replicas"] == 1
    assert free.best_spec.autoscaling_params["max_replicas"] > 1
    assert capped.trials[0].cost_usd != free.trials[0].cost_usd


def test_without_a_cap_in_the_config_the_presets_bound_stays(tmp_path, capsys):
    config = tmp_path / "serve.toml"
    config.write_text('routing_policy = "threshold"\n')
    out = tmp_path / "tuned.toml"
    argv = ["tune", "--trace", TRACE, "--policy", "threshold", "--trials", "2", "--config"]
    assert main(argv + [str(config), "--slo-attainment", "0.5", "--out", str(out)]) == 0
    assert tomllib.loads(out.read_text())["autoscaling"]["max_replicas"] >= 8


@pytest.mark.parametrize("preset", sorted(SPACES))
def test_every_searched_parameter_moves_the_simulation(preset):
    trace, profile = read_trace(SHORT), SimProfile.reference()
    capacity = profile.vm_capacity_per_s()
    for name, spec in SPACES[preset].items():
        low, high = bounds(spec, 4, capacity)
        runs = []
        for value in (low, high):
            value = int(value) if spec[0] == "int" else float(value)
            built = preset_spec(preset, trace, profile, {name: value})
            s = run_spec(trace, built, profile, name=preset).summary
            runs.append((s["cost_usd"], s["slo_attainment"], s["p99_ms"]))
        assert runs[0] != runs[1], f"{preset}: {name} from {low} to {high} changed nothing"


def test_vm_reactive_snippet_carries_the_tuned_rate(tmp_path, capsys):
    out = tmp_path / "tuned.toml"
    argv = ["tune", "--trace", TRACE, "--policy", "vm-reactive", "--trials", "3"]
    assert main(argv + ["--slo-attainment", "0.5", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    rate = tomllib.loads(out.read_text())["autoscaling"]["target_rps_per_replica"]
    assert f"autoscaling.target_rps_per_replica = {rate:.4g}" in printed
    served = Settings.load(str(out), data_dir=tmp_path / "data")
    assert served.autoscaling.target_rps_per_replica == pytest.approx(rate)
