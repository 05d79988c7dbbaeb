"""``tidegate simulate`` outputs an ops person asks for that had nothing in them."""

from __future__ import annotations

from ops.cli import main


def test_plotting_the_optimum_alone_says_there_is_nothing_over_time(tmp_path, capsys):
    trace = tmp_path / "t.csv"
    trace.write_text("".join(f"{i * 0.1:.1f},mlp\n" for i in range(100)))
    page = tmp_path / "o.html"
    argv = ["simulate", "--trace", str(trace), "--policy", "optimum", "--plot", str(page)]
    assert main(argv) == 2
    assert "plot a preset" in capsys.readouterr().err
    assert not page.exists()  # (it wrote a page without a chart, and no PNG)


def test_every_preset_json_has_the_summary_keys_at_the_top(tmp_path):
    """The default (--policy all) wrote only {"runs": [...]}: `requests`, `slo_attainment`, ...
    and `tenants` were missing from the top level the issue names."""
    import json

    trace = tmp_path / "t.csv"
    trace.write_text("".join(f"{i * 0.1:.1f},mlp,{'a' if i % 2 else 'b'}\n" for i in range(300)))
    out = tmp_path / "all.json"
    assert main(["simulate", "--trace", str(trace), "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["policy"] == "slo-aware" and len(doc["runs"]) == 7
    for key in ("requests", "slo_attainment", "p50_ms", "p99_ms", "cost_usd", "vm_hours"):
        assert doc[key] == next(r for r in doc["runs"] if r["policy"] == "slo-aware")[key]
    assert set(doc["tenants"]) == {"a", "b"} and doc["optimum_cost_usd"] > 0


TRACES = [
    "synth:steady:duration_s=3600,rps=2",
    "synth:mmpp:duration_s=3600,low_rps=2,high_rps=60,mean_low_s=300,mean_high_s=30",
    "synth:flash-crowd:duration_s=1800,base_rps=3,peak_mult=30,start_s=600,ramp_s=20,"
    "hold_s=120,decay_s=300",
]


def test_no_preset_beats_the_bound_at_its_attainment():
    """The optimum is a lower bound: no preset meeting the SLO as often costs less (on the
    low-rate traces where slo-aware now leaves the load to functions, as the bound does)."""
    import pytest

    from ops.sim import PRESETS, SimProfile, simulate
    from ops.traces import read_trace

    profile = SimProfile.reference()
    for spec in TRACES:
        trace = read_trace(spec, seed=4)
        bound = simulate(trace, "optimum", profile, seed=4).summary
        for preset in PRESETS[:-1]:
            run = simulate(trace, preset, profile, seed=4).summary
            if run["slo_attainment"] >= bound["slo_attainment"]:
                assert run["cost_usd"] >= bound["cost_usd"] * (1 - 1e-9), (spec, preset)
            assert run["cost_usd"] == pytest.approx(
                sum(t["cost_usd"] for t in run["tenants"].values()), rel=1e-9
            )
