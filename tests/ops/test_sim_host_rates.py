"""The host's other work as ``sim_vs_real.py`` measures it for the simulator
(``ops/bench/host_cpu.py``): a request's CPU measured at 4 req/s alone is ~2x what one more
costs at the replays' rates (the gateway's and load generator's fixed costs amortize). Probed
at several rates, ``--host-slope`` charges the line through them: its slope per request and
its intercept as a base load (``[simulate] host_base_cores``). The default stays the 4 req/s
figure: charged the slope, the simulated onsets moved further from live (docs/ops.md)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from ops.bench.host_cpu import host_line, simulate_keys
from ops.sim import simulate

from tests.ops.test_sim_cold_share import COLD_MS, LOCAL
from tests.ops.test_sim_host_share import _onset


def _measured(tmp_path, slope: bool = True, attribution="session", **extra) -> dict[str, float]:
    cpu = {
        "gateway_session_cpu_ms_per_request": 3.0,
        "loadgen_cpu_ms_per_request": 2.0,
        "idle_session_cores": 0.002,
        "vm_replica_cores": 0.01,
        **extra,
    }
    path = tmp_path / "host_cpu.json"
    path.write_text(json.dumps(cpu))
    keys = {}
    for line in simulate_keys(path, slope=slope, attribution=attribution).splitlines():
        name, value = line.split(" = ")
        keys[name] = float(value)
    return keys


def test_probes_at_several_rates_charge_the_slope_and_the_intercept(tmp_path):
    """Busy cores 0.02 at 4 req/s, 0.036 at 12, 0.06 at 24: 2 ms per request more, 0.012
    cores whatever the rate (at 4 req/s alone a request looked like 5 ms)."""
    rates = [
        {"rps": 4.0, "cores": 0.02},
        {"rps": 12.0, "cores": 0.036},
        {"rps": 24.0, "cores": 0.06},
    ]
    keys = _measured(tmp_path, rates=rates)
    assert keys["host_cpu_ms_per_request"] == pytest.approx(2.0, abs=1e-3)
    assert keys["host_base_cores"] == pytest.approx(0.012, abs=1e-3)


def test_without_the_slope_or_with_one_rate_the_cpu_per_request_at_4_rps_is_charged(tmp_path):
    """The default, and a run measured before the probes at several rates: the gateway's and
    the load generator's CPU per request at 4 req/s, no base load."""
    rates = [{"rps": 4.0, "cores": 0.02}, {"rps": 24.0, "cores": 0.06}]
    for keys in (
        _measured(tmp_path),
        _measured(tmp_path, rates=rates[:1]),
        _measured(tmp_path, slope=False, rates=rates),
    ):
        assert keys["host_cpu_ms_per_request"] == pytest.approx(5.0)
        assert "host_base_cores" not in keys


@pytest.mark.parametrize(
    ("points", "want"),
    [
        # noise at 100 Hz CPU ticks, the busier rate read less (no slope): the busy cores over
        # the rate, on average over the probes
        ([(4.0, 0.03), (24.0, 0.02)], (0.0, 0.025 / 14.0 * 1000.0)),
        # a line through below the origin: through the origin instead, never a negative base
        ([(4.0, 0.002), (24.0, 0.06)], (0.0, (4 * 0.002 + 24 * 0.06) / (16 + 576) * 1000.0)),
    ],
)
def test_a_line_the_probes_do_not_support_is_not_charged(points, want):
    base, per_request_ms = host_line([{"rps": r, "cores": c} for r, c in points])
    assert base >= 0.0 and per_request_ms > 0.0
    assert (base, per_request_ms) == pytest.approx(want)


def test_a_base_load_leaves_the_starts_fewer_cores():
    """One core busy whatever the rate: the 8 starts at 5 s and the one under way share the
    other (they answer after 8.5 cold starts, not 4.25 on both cores)."""
    trace = _onset()
    local = replace(LOCAL, fn_concurrency=9)
    alone = simulate(trace, "burst-only", local).latency_ms[1:]
    based = simulate(trace, "burst-only", replace(local, host_base_cores=1.0)).latency_ms[1:]
    assert np.median(alone) == pytest.approx(4.25 * COLD_MS + 20.0, rel=0.02)
    assert np.median(based) == pytest.approx(8.5 * COLD_MS + 20.0, rel=0.02)


def test_the_tree_attribution_charges_the_whole_process_trees_cpu(tmp_path):
    """Measured both ways in one run: the gateway's tree (its model servers, runtime and
    instances) spent 4 ms per request and 9 ms per warm invocation where its session (the
    gateway alone) spent 3 and 5. A run measured before the tree was: the session's."""
    both = {"gateway_tree_cpu_ms_per_request": 4.0, "warm_burst_tree_cpu_ms_per_request": 9.0}
    both["warm_burst_cpu_ms_per_request"] = 5.0
    tree = _measured(tmp_path, slope=False, attribution="tree", **both)
    assert tree["host_cpu_ms_per_request"] == pytest.approx(6.0)
    assert tree["fn_warm_cpu_ms"] == pytest.approx(5.0)
    session = _measured(tmp_path, slope=False, attribution="session", **both)
    assert session["host_cpu_ms_per_request"] == pytest.approx(5.0)
    assert session["fn_warm_cpu_ms"] == pytest.approx(2.0)
    old_run = _measured(
        tmp_path, slope=False, attribution="tree", warm_burst_cpu_ms_per_request=5.0
    )
    assert old_run == session
