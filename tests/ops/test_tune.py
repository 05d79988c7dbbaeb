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
