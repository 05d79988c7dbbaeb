"""``tidegate tune``: Optuna finds parameters that meet the target, the front is Pareto, and the
snippet is a config ``tidegate serve`` accepts."""

from __future__ import annotations

import tomllib

from gateway.settings import Settings
from ops.cli import main
from ops.sim import SimProfile
from ops.traces import read_trace
from ops.tune import tune

TRACE = "synth:mmpp:duration_s=600,low_rps=10,high_rps=120,mean_low_s=120,mean_high_s=40"


def test_tune_meets_the_target_no_dearer_than_the_preset_and_front_is_pareto():
    trace = read_trace(TRACE)
    result = tune(trace, "threshold", SimProfile.reference(), target=0.99, trials=5, seed=1)
    assert len(result.trials) == 5
    assert result.best is not None and result.best.slo_attainment >= 0.99
    first = result.trials[0]  # the preset's own parameters are tried first
    if first.slo_attainment >= 0.99:
        assert result.best.cost_usd <= first.cost_usd
    front = result.front()
    for a in front:
        assert not any(
            b.cost_usd < a.cost_usd and b.slo_attainment >= a.slo_attainment for b in result.trials
        )


def test_cli_writes_a_snippet_serve_accepts(tmp_path, capsys):
    out = tmp_path / "tuned.toml"
    rc = main(
        [
            "tune",
            "--trace",
            TRACE,
            "--policy",
            "slo-aware",
            "--trials",
            "3",
            "--slo-attainment",
            "0.95",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "cost/attainment front" in printed and "best: trial" in printed
    settings = Settings.model_validate(tomllib.loads(out.read_text()))
    assert settings.routing_policy == "slo-aware"
    assert settings.autoscaling.policy == "predictive"
    assert 0 < settings.autoscaling.base_quantile < 1


def test_cli_refuses_what_it_cannot_tune(capsys):
    assert main(["tune", "--trace", TRACE, "--policy", "burst-only"]) == 2
    assert "cannot tune" in capsys.readouterr().err
    assert main(["tune", "--trace", TRACE, "--slo-attainment", "1.5"]) == 2
    assert "--slo-attainment" in capsys.readouterr().err


def test_tune_queues_async_tenants_as_serve_would(tmp_path):
    """A --config with an async-class tenant: every trial queues its requests until their
    deadline (as `tidegate simulate --config` and the gateway do), so the trial's figures are
    the simulation's with the async queue, not with the burst served at once."""
    import json

    import numpy as np

    from ops.sim import AsyncSetup, preset_spec, run_spec

    rng = np.random.default_rng(0)
    web = np.sort(rng.uniform(0, 300, 12000))
    batch = 100.0 + np.sort(rng.uniform(0, 1.0, 1000))
    rows = [(t, "web") for t in web] + [(t, "batch") for t in batch]
    csv = tmp_path / "trace.csv"
    csv.write_text("".join(f"{t:.6f},resnet18,{who}\n" for t, who in sorted(rows)))
    cfg = tmp_path / "tenants.toml"
    cfg.write_text(
        '[[tenants]]\nname = "web"\napi_keys = ["w"]\n'
        '[[tenants]]\nname = "batch"\napi_keys = ["b"]\nslo_class = "async"\ndeadline_s = 120\n'
    )
    out = tmp_path / "tune.json"
    args = ["tune", "--trace", str(csv), "--config", str(cfg), "--policy", "threshold"]
    snippet = ["--out", str(tmp_path / "tuned.toml")]
    rc = main(args + snippet + ["--trials", "1", "--slo-attainment", "0.5", "--json", str(out)])
    assert rc == 0
    first = json.loads(out.read_text())["trials"][0]
    trace = read_trace(csv)
    profile = SimProfile.reference().with_overrides(model="resnet18")
    spec = preset_spec("threshold", trace, profile, first["params"])
    queued = run_spec(
        trace, spec, profile, name="threshold", async_setup=AsyncSetup({"batch": 120.0})
    )
    at_once = run_spec(trace, spec, profile, name="threshold")
    assert queued.summary["requests_queued"] == 1000
    assert first["cost_usd"] == queued.summary["cost_usd"]
    assert first["slo_attainment"] == queued.summary["slo_attainment"]
    assert first["slo_attainment"] != at_once.summary["slo_attainment"]
