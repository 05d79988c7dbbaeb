"""Warm function instances are lent between models on a shared fleet, as live: the gateway runs
every model on one master and one set of worker functions, and the runtime gives a call any
idle instance (``ops/sim/functions.py``, ``ops/sim/lend.py``). A request finding only another
model's idle instance runs warm plus the read of its weights; it used to start one cold."""

from __future__ import annotations

import numpy as np
import pytest

from ops.sim import SimProfile
from ops.sim.functions import lend_between
from ops.sim.lend import ZOO_PARAMS_M, weight_read_ms
from ops.sim.shared_lane import PlatformPool
from ops.sim.shared_run import simulate_shared
from ops.traces import _build

FLAT = dict(burst_p50_ms=100.0, burst_billed_ms=100.0, burst_sigma=1e-9, cold_start_ms=900.0)


def _pools(b_memory_mb: int = 2048):
    a = PlatformPool(SimProfile(model="a", fn_weight_read_ms=40.0, **FLAT), 1)
    b_profile = SimProfile(model="b", fn_weight_read_ms=70.0, burst_memory_mb=b_memory_mb, **FLAT)
    b = PlatformPool(b_profile, 2)
    a.peers = b.peers = [a, b]
    lend_between([a, b])
    return a, b


def test_another_models_idle_instance_serves_warm_plus_the_weight_read():
    a, b = _pools()
    latency_a, billed_a, cold_a = a.serve(0.0)
    assert cold_a and a.cold_starts == 1
    latency_b, billed_b, cold_b = b.serve(10.0)  # a's instance idle since ~1 s
    assert not cold_b and b.cold_starts == 0 and b.switches == 1
    assert latency_b == pytest.approx(100.0 + 70.0, rel=1e-6)  # warm run + b's weight read
    assert billed_b == pytest.approx(100.0 + 70.0, rel=1e-6)
    # the instance is b's now: a's next request reads a's weights back into it
    assert (a.warm_groups(), b.warm_groups()) == (0, 1)
    latency_a2, _, cold_a2 = a.serve(20.0)
    assert not cold_a2 and a.switches == 1 and latency_a2 == pytest.approx(140.0, rel=1e-6)
    # its own idle instance first: no read
    a.release(30.0)  # (the engine releases a pool's answered requests before it serves)
    assert a.serve(30.0)[0] == pytest.approx(100.0, rel=1e-6) and a.switches == 1


def test_plans_on_other_functions_do_not_lend():
    a, b = _pools(b_memory_mb=1024)  # b's plan runs on tidegate-master-1024mb, a's on 2048 MB
    a.serve(0.0)
    assert b.serve(10.0)[2] is True and b.cold_starts == 1 and b.switches == 0


def test_an_instance_past_the_keep_alive_is_not_lent():
    a, b = _pools()
    a.serve(0.0)
    assert b.serve(a.keep_alive_s + 5.0)[2] is True and b.switches == 0


def _alternating(n: int = 40, gap_s: float = 30.0):
    """One request every ``gap_s``, the two models in turn (each idle 2 x gap_s between its own)."""
    arr = np.arange(n) * gap_s
    models = ["resnet18" if i % 2 == 0 else "mobilenet_v2" for i in range(n)]
    return _build("alt", arr, models, ["t"] * n)


def test_a_shared_fleet_starts_one_instance_for_models_in_turn():
    trace = _alternating()
    profiles = [SimProfile.reference(m) for m in trace.models]
    run = simulate_shared(trace, "burst-only", profiles).summary
    assert run["requests_burst"] == len(trace)
    # one instance serves both models in turn (one function of 2048 MB each): one cold start,
    # where each model started its own before
    assert run["cold_starts"] == 1
    assert sorted(m["cold_starts"] for m in run["models"].values()) == [0, 1]
    # every request after the first reads its model's weights into the instance: the
    # production target reads them from S3 (ResNet-18 ~0.49 s, MobileNetV2 ~0.16 s)
    from burst.planning import load_profile

    s3 = load_profile().transfer["s3"]  # (20 ms + 10 ms per MB)
    reads = {p.model: weight_read_ms(p) for p in profiles}
    assert reads["resnet18"] == pytest.approx(s3.ms(46.8e6), rel=1e-3)
    assert reads["mobilenet_v2"] == pytest.approx(s3.ms(14.0e6), rel=1e-3)
    assert run["models"]["mobilenet_v2"]["p50_ms"] > profiles[1].burst_p50_ms + 100.0


def test_the_zoo_parameter_counts_are_the_zoos():
    from vmpool import zoo

    for name, params_m in ZOO_PARAMS_M.items():
        assert zoo.param_count(name) / 1e6 == pytest.approx(params_m, abs=0.06), name


def test_a_model_without_a_weight_figure_reads_for_as_long_as_a_cold_start():
    assert weight_read_ms(SimProfile(model="someone_elses", cold_start_ms=1234.0)) == 1234.0
