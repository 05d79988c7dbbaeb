"""What docs/ops.md shows, run as written: the [trace] mapping with `simulate --model`."""

import json
import subprocess
import sys
from pathlib import Path

TRACE_2021 = (
    "app,func,end_timestamp,duration\nappA,f1,10.5,0.1\nappA,f1,11.5,0.1\nappB,f2,12.0,0.2\n"
)
CONFIG = """[trace]
default_model = "resnet18"
default_tenant = "default"
[[trace.map]]
match = "appA/*"
model = "resnet50"
tenant = "acme"
"""


def _simulate(tmp_path: Path, *extra: str) -> dict:
    (tmp_path / "t.csv").write_text(TRACE_2021)
    out = tmp_path / "out.json"
    cmd = [sys.executable, "-m", "ops", "simulate", "--trace", str(tmp_path / "t.csv")]
    cmd += ["--policy", "vm-peak", "--json", str(out), *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text())


def test_model_filters_a_trace_its_config_maps_to_several_models(tmp_path):
    """`--model` picks one model's requests of a mapped trace; the config's default_model
    still maps the functions no rule matches (they were all sent to --model's fleet)."""
    (tmp_path / "c.toml").write_text(CONFIG)
    run = _simulate(tmp_path, "--config", str(tmp_path / "c.toml"), "--model", "resnet50")
    assert run["requests"] == 2
    assert set(run["tenants"]) == {"acme"}


def test_model_names_every_request_of_a_trace_with_no_models(tmp_path):
    run = _simulate(tmp_path, "--model", "mlp")
    assert run["requests"] == 3 and run["model"] == "mlp"


def test_configuration_reference_names_tables_as_toml_writes_them():
    """A reader copies the headings: tenants are an array of tables, and each [autoscaling]
    table is named by its policy (five identical `[autoscaling]` headings said nothing)."""
    from ops.config_reference import render

    headings = [line for line in render().splitlines() if line.startswith("## ")]
    assert "## `[[tenants]]`" in headings
    for policy in ("none", "target", "knative", "predictive", "queue"):
        assert f"## `[autoscaling]` — policy `{policy}`" in headings
    assert "## `[ledger]`" in headings  # sqlite or postgresql: no one kind


def test_heldout_sets_are_the_runs_ops_md_counts():
    """docs/ops.md cites `ops/bench/heldout.py --set 18|20|v3|v4` by their run counts."""
    from ops.bench.heldout import SETS

    assert {name: len(runs) for name, runs in SETS.items()} == {
        "18": 18,
        "20": 20,
        "v3": 11,
        "v4": 12,
    }
    for runs in SETS.values():
        assert len({name for name, _, _ in runs}) == len(runs)  # one row per run
