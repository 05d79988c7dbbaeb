"""`tidegate simulate` on a trace of several models without --model: each model on its own
fleet with its own figures, the runs summed (it was refused: "choose one with --model", and
before that every request ran as the first model's). The sum is checked against each model
simulated alone, as a user would check it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ops.cli import main


@pytest.fixture(scope="module")
def trace(tmp_path_factory):
    rng = np.random.default_rng(3)
    rows = []
    for model, rps, tenant in [
        ("resnet18", 12, "a"),
        ("mobilenet_v2", 6, "b"),
        ("resnet18", 3, "b"),
    ]:
        rows += [(t, model, tenant) for t in rng.uniform(0, 300, int(rps * 300))]
    path = tmp_path_factory.mktemp("models") / "two.csv"
    path.write_text(
        "timestamp_s,model,tenant\n" + "".join(f"{t:.4f},{m},{n}\n" for t, m, n in sorted(rows))
    )
    return path


def _run(tmp_path, trace, policy, *extra) -> dict:
    out = tmp_path / f"{policy}-{'-'.join(extra) or 'all'}.json"
    argv = ["simulate", "--trace", str(trace), "--policy", policy, "--json", str(out), *extra]
    assert main(argv) == 0
    return json.loads(out.read_text())


@pytest.mark.parametrize("policy", ["slo-aware", "vm-peak", "burst-only"])
def test_each_model_runs_on_its_own_fleet_and_the_sum_is_what_each_alone_costs(
    tmp_path, trace, policy
):
    both = _run(tmp_path, trace, policy, "--fleet", "per-model")
    alone = {m: _run(tmp_path, trace, policy, "--model", m) for m in ("resnet18", "mobilenet_v2")}
    assert both["requests"] == 300 * 21 == sum(a["requests"] for a in alone.values())
    for key in ("cost_usd", "vm_hours", "function_gb_s", "cold_starts", "optimum_cost_usd"):
        assert both[key] == pytest.approx(sum(a[key] for a in alone.values()), rel=1e-9), key
    met = sum(a["slo_attainment"] * a["requests"] for a in alone.values())
    assert both["slo_attainment"] == pytest.approx(met / both["requests"])
    assert min(a["p99_ms"] for a in alone.values()) <= both["p99_ms"]
    assert both["p99_ms"] <= max(a["p99_ms"] for a in alone.values())
    assert set(both["models"]) == set(alone) and both["slo_ms"] == {
        m: a["slo_ms"] for m, a in alone.items()
    }
    tenants = both["tenants"]
    assert {n: t["requests"] for n, t in tenants.items()} == {"a": 3600, "b": 2700}
    assert sum(t["cost_usd"] for t in tenants.values()) == pytest.approx(both["cost_usd"])
    b_alone = [a["tenants"]["b"] for a in alone.values()]  # b used both models
    assert tenants["b"]["cost_usd"] == pytest.approx(sum(t["cost_usd"] for t in b_alone))


def test_every_preset_runs_with_a_table_and_a_plot(tmp_path, trace, capsys):
    plot = tmp_path / "p.html"
    argv = ["simulate", "--trace", str(trace), "--policy", "all", "--plot", str(plot)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    for preset in ("vm-peak", "vm-reactive", "burst-only", "threshold", "slo-aware", "optimum"):
        assert preset in out
    assert plot.stat().st_size > 0 and plot.with_suffix(".png").stat().st_size > 0
