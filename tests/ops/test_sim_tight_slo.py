"""A tight SLO that functions cannot meet (ResNet-18's 110 ms functions, an 80 ms SLO): the
scaler learns the bursts' size on VMs, and then must not pay more than VMs for the peak would."""

from __future__ import annotations

import json

from ops.cli import main

MMPP = "synth:mmpp:duration_s=3600,low_rps=30,high_rps=400,mean_low_s=240,mean_high_s=15"


def _run(tmp_path, capsys, policy: str) -> dict:
    out = tmp_path / f"{policy}.json"
    args = ["simulate", "--trace", MMPP, "--model", "resnet18", "--slo-ms", "80"]
    assert main([*args, "--policy", policy, "--json", str(out)]) == 0
    capsys.readouterr()
    return json.loads(out.read_text())


def test_slo_aware_costs_no_more_than_vms_for_the_peak_when_functions_miss_the_slo(
    tmp_path, capsys
):
    peak, aware = _run(tmp_path, capsys, "vm-peak"), _run(tmp_path, capsys, "slo-aware")
    burst = _run(tmp_path, capsys, "burst-only")
    assert burst["slo_attainment"] < 0.1  # functions do miss it
    assert aware["cost_usd"] <= peak["cost_usd"]
    # its misses are the bursts seen before the fleet knew their size, the first 8 minutes
    assert aware["slo_attainment"] > 0.95
