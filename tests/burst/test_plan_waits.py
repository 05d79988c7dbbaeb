"""A model that waits rather than computes (the ``delay`` load-test model: 50 ms + 5 ms a row,
no MACs) is predicted to take that long: ``tidegate plan delay`` said 4 ms before, priced by
its MACs alone, and the simulator and routing read the same prediction."""

from __future__ import annotations

import json

from ops.cli import main


def test_the_delay_models_plan_predicts_its_wait(tmp_path, capsys):
    repo = tmp_path / "models"
    assert main(["export", "delay", "--out", str(repo)]) == 0
    for batch, wait_ms in ((1, 55.0), (8, 90.0)):
        capsys.readouterr()
        argv = ["plan", "delay", "--repo", str(repo), "--batch", str(batch), "--json"]
        assert main(argv) == 0, capsys.readouterr().err
        plan = json.loads(capsys.readouterr().out)
        # the wait plus no more than an invocation's overhead (the reference profile's)
        assert wait_ms <= plan["predicted_p50_ms"] + 2.0 < wait_ms + 15.0, plan["predicted_p50_ms"]
        assert plan["predicted_p99_ms"] >= plan["predicted_p50_ms"]
