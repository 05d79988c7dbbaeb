"""`tidegate simulate --fleet shared|per-model` on a trace of several models: shared by default
(what one gateway runs), per-model on request; a bad value is one line and a failure; a trace
of one model gives the same JSON whichever fleet is asked."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ops.cli import main


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    rng = np.random.default_rng(5)
    rows = [(t, "resnet18", "a") for t in rng.uniform(0, 240, 2400)]
    rows += [(t, "mobilenet_v2", "b") for t in rng.uniform(0, 240, 1200)]
    path = tmp_path_factory.mktemp("fleet") / "two.csv"
    path.write_text(
        "timestamp_s,model,tenant\n" + "".join(f"{t:.4f},{m},{n}\n" for t, m, n in sorted(rows))
    )
    return path


def _json(tmp_path, trace, *extra) -> dict:
    out = tmp_path / "out.json"
    argv = ["simulate", "--trace", str(trace), "--policy", "vm-peak", "--json", str(out)]
    assert main([*argv, *extra]) == 0
    return json.loads(out.read_text())


def test_several_models_share_one_fleet_by_default(tmp_path, two):
    shared = _json(tmp_path, two)
    assert shared["fleet"] == "shared" and set(shared["models"]) == {"resnet18", "mobilenet_v2"}
    assert {n: t["requests"] for n, t in shared["tenants"].items()} == {"a": 2400, "b": 1200}
    assert sum(t["cost_usd"] for t in shared["tenants"].values()) == pytest.approx(
        shared["cost_usd"]
    )
    apart = _json(tmp_path, two, "--fleet", "per-model")
    assert "fleet" not in apart and set(apart["models"]) == set(shared["models"])
    # vm-peak: one fleet for the summed peak costs no more than a fleet per model's peak
    assert shared["cost_usd"] <= apart["cost_usd"]
    assert shared["optimum_cost_usd"] <= shared["cost_usd"]
    assert shared == _json(tmp_path, two, "--fleet", "shared")


def test_a_bad_fleet_is_one_line_and_a_failure(two, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["simulate", "--trace", str(two), "--fleet", "pooled"])
    assert exc.value.code != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert "--fleet" in err[-1] and "'shared', 'per-model'" in err[-1]


def test_the_help_says_what_each_fleet_is(capsys):
    with pytest.raises(SystemExit):
        main(["simulate", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--fleet {shared,per-model}" in out and "one fleet per model" in out


def test_a_trace_of_one_model_is_the_same_whichever_fleet(tmp_path):
    trace = tmp_path / "one.csv"
    rng = np.random.default_rng(1)
    trace.write_text("".join(f"{t:.4f},resnet18\n" for t in np.sort(rng.uniform(0, 120, 900))))
    default = _json(tmp_path, trace, "--policy", "slo-aware")
    for fleet in ("shared", "per-model"):
        assert _json(tmp_path, trace, "--policy", "slo-aware", "--fleet", fleet) == default
    assert "fleet" not in default
