"""A very loose SLO is simulated in bounded memory, and one past a day is a one-line error.

``--slo-ms 1e7`` (under three hours) made the optimum's carry grid hours of VM capacity wide:
21 GB for a two-request trace, killed; ``1e9`` a 2.2 TiB traceback; ``1e300`` the line
"Maximum allowed dimension exceeded"."""

from __future__ import annotations

import json
import resource

import numpy as np

from ops.cli import main
from ops.sim.optimum_carry import CarryProblem, carry_dp


def test_the_carry_grid_is_no_wider_than_the_busiest_bin():
    # hour-long bins of a 100 req/s VM: before, 3.6e5 carried states for a bin of 1 request
    pr = CarryProblem(
        demand=np.array([1.0, 0.0, 1.0]),
        bin_s=3600.0,
        capacity_per_s=1e5,
        vm_usd_per_s=1e-4,
        spill_usd=1e-5,
        boot_s=30.0,
        slo_s=3600.0,
    )
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    bound = carry_dp(pr)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 100  # the grid: 2 VM counts x 2 carried counts; before ~3 GB
    assert 0 < bound.cost_usd <= 2e-5  # a bound: at most spilling both, far below a VM hour


def test_a_loose_slo_simulates_and_one_past_a_day_is_refused(tmp_path, capsys):
    trace = tmp_path / "ok.csv"
    trace.write_text("timestamp_s,model\n0.5,mlp\n1.0,mlp\n")
    out = tmp_path / "o.json"
    args = ["simulate", "--trace", str(trace), "--policy", "optimum", "--json", str(out)]
    assert main([*args, "--slo-ms", "3.6e7"]) == 0
    assert json.loads(out.read_text())["requests"] == 2
    capsys.readouterr()
    assert main([*args, "--slo-ms", "1e300"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["tidegate simulate: error: --slo-ms 1e+300 is over a day (8.64e+07 ms): a typo?"]
