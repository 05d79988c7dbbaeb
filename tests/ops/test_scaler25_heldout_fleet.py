"""heldout.py --fleet: rand4's traces of several models on one shared fleet, as `tidegate
simulate` runs them by default, or one fleet per model, summed (session 25)."""

from __future__ import annotations

import pytest

from ops.bench import heldout, heldout_rand4
from ops.bench.heldout_rand4 import Part, Run
from ops.sim import simulate
from ops.sim.shared_run import simulate_shared

RUN = Run(
    "r4 mix test",
    (
        Part("mobilenet_v2", 120.0, "steady:duration_s=240,rps=40", tenant="tenant0"),
        Part("resnet50", 250.0, "steady:duration_s=240,rps=15", tenant="tenant1"),
    ),
    7,
)


@pytest.fixture
def trace(tmp_path):
    return heldout_rand4.build_trace(RUN, tmp_path)


def test_shared_fleet_is_the_one_fleet_tidegate_simulate_runs(tmp_path, trace):
    cache: dict = {}
    row = heldout._run_rand4(RUN, tmp_path, cache, None, "shared")
    profiles = [heldout_rand4.model_profile(m, RUN.models()[m]) for m in trace.models]
    want = simulate_shared(trace, "slo-aware", profiles, seed=RUN.seed).summary
    assert row["cost_usd"] == pytest.approx(want["cost_usd"])
    assert row["slo_attainment"] == pytest.approx(want["slo_attainment"])
    bound = simulate_shared(trace, "optimum", profiles, seed=RUN.seed).summary["cost_usd"]
    assert cache["r4 mix test [shared]"]["optimum"] == pytest.approx(bound)
    assert "r4 mix test" not in cache  # (the per-model sums are kept under the run's name)


def test_per_model_sums_one_fleet_each_and_keeps_its_own_references(tmp_path, trace):
    cache: dict = {"r4 mix test [shared]": {"vm-peak": 9.0, "optimum": 9.0}}
    row = heldout._run_rand4(RUN, tmp_path, cache, None, "per-model")
    parts = [
        simulate(
            trace.only_model(m), "slo-aware", heldout_rand4.model_profile(m, slo), seed=RUN.seed
        ).summary
        for m, slo in RUN.models().items()
    ]
    assert row["cost_usd"] == pytest.approx(sum(p["cost_usd"] for p in parts))
    assert cache["r4 mix test"]["vm-peak"] != 9.0  # not the shared fleet's cached figure
    assert heldout.cache_key("r4 mix test", "per-model", True) == "r4 mix test"
    assert heldout.cache_key("r4 s0", "shared", False) == "r4 s0"  # one model: one fleet


def test_an_unknown_fleet_is_a_one_line_error(capsys, monkeypatch):
    monkeypatch.setattr("sys.argv", ["heldout.py", "--set", "rand4", "--fleet", "both"])
    with pytest.raises(SystemExit) as exc:
        heldout.main()
    assert exc.value.code == 2
    assert "--fleet" in capsys.readouterr().err
