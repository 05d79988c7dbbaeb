"""`tidegate simulate` on a trace of several models with an async-class tenant: the shared
fleet does not simulate the async queue (it is the one-model engine's, tied to one VM pool),
so the run is refused with one line naming `--fleet per-model`, which runs it; and the
shared fleet's summary and each model's come from one builder (the same keys)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ops.cli import main


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    rng = np.random.default_rng(7)
    rows = [(t, "resnet18", "web") for t in rng.uniform(0, 120, 900)]
    rows += [(t, "mobilenet_v2", "batch") for t in rng.uniform(0, 120, 300)]
    root = tmp_path_factory.mktemp("sim25")
    trace = root / "two.csv"
    trace.write_text(
        "timestamp_s,model,tenant\n" + "".join(f"{t:.4f},{m},{n}\n" for t, m, n in sorted(rows))
    )
    cfg = root / "tenants.toml"
    cfg.write_text(
        '[[tenants]]\nname = "web"\napi_keys = ["w"]\n'
        '[[tenants]]\nname = "batch"\napi_keys = ["b"]\nslo_class = "async"\ndeadline_s = 120\n'
    )
    return trace, cfg


def test_async_tenants_on_a_shared_fleet_are_one_line_naming_per_model(mixed, capsys, tmp_path):
    trace, cfg = mixed
    out = tmp_path / "out.json"
    argv = ["simulate", "--trace", str(trace), "--config", str(cfg), "--policy", "threshold"]
    assert main([*argv, "--json", str(out)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert "async" in err[-1] and "--fleet per-model" in err[-1]
    assert not out.exists()
    assert main([*argv, "--fleet", "per-model", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["requests"] == 1200 and doc["requests_queued"] > 0


def test_each_model_of_a_shared_fleet_is_summed_up_in_a_one_model_runs_keys(mixed, tmp_path):
    trace, _ = mixed
    out = tmp_path / "out.json"
    argv = ["simulate", "--trace", str(trace), "--policy", "threshold", "--json", str(out)]
    assert main(argv) == 0
    doc = json.loads(out.read_text())
    one = tmp_path / "one.json"
    assert main([*argv[:-1], str(one), "--model", "resnet18"]) == 0
    single = json.loads(one.read_text())
    for model in doc["models"].values():
        extra = set(model) - set(single)
        assert extra == {"vm_busy_share"}, extra  # (a share of the one fleet's bill)
        # (the run's ratios to the optimum are the document's, not a model's)
        ratios = {"optimum_cost_usd", "cost_vs_optimum", "vm_peak_vs_cost"}
        assert set(single) - set(model) - ratios == {"peak_vm_replicas"}
