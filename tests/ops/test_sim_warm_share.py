"""Warm invocations on the embedded runtime share the host's cores too (``[simulate]
fn_warm_cpu_ms``, ``FunctionPool._warm_cpu_late_ms``): a warm run's CPU (its instance is one
process on one thread) shares what the host's other work leaves with the cold starts and the
other warm runs' CPU under way, and alone it takes the profile's warm time. Live, a flash
crowd's spills took 230-670 ms (p50 per second) on 3 warm instances while 5 cold starts ran,
where the simulator answered them in 30-90 ms and attained 4.25 points more than live."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from ops.sim import SimProfile, simulate
from ops.sim.functions import FunctionPool
from ops.traces import Trace

from tests.ops.test_sim_cold_share import COLD_MS, LOCAL  # the 2-core local runtime profile

WARM_MS = LOCAL.burst_p50_ms  # 20 ms alone
CPU_MS = 10.0  # half of it computes


def _pool_with_a_warm_instance(profile: SimProfile, starts: int) -> FunctionPool:
    """A pool whose one instance (started at 0 s) is idle at 10 s, with ``starts`` more
    instances starting from 9.9 s (the warm pool's, which take no request)."""
    pool = FunctionPool(profile, seed=0)
    pool.serve(0.0, None, 0)
    pool.release(9.9)
    if starts:
        pool.keep_warm(1 + starts, 9.9)
    pool.release(10.0)
    assert len(pool.idle) == 1
    return pool


def test_a_warm_run_alone_takes_its_profiled_time():
    pool = _pool_with_a_warm_instance(replace(LOCAL, fn_warm_cpu_ms=CPU_MS), 0)
    latency_ms, billed_ms, cold = pool.serve(10.0, None, 1)
    assert not cold
    assert latency_ms == pytest.approx(WARM_MS)


@pytest.mark.parametrize(("busy_cores", "want_ms"), [(0.0, 10.0 + CPU_MS / 0.4), (1.0, 60.0)])
def test_a_warm_run_beside_cold_starts_and_a_busy_host_takes_longer(busy_cores, want_ms):
    """4 starts under way on 2 cores: the warm run's 10 ms of CPU is one of 5 sharing them
    (0.4 core: 25 ms), so it answers after 35 ms, not 20; with 1 core busy elsewhere they share
    1 (0.2 core: 50 ms, answered after 60 ms). It bills the time it takes."""
    profile = replace(LOCAL, fn_warm_cpu_ms=CPU_MS, host_cpu_ms_per_request=1.0)
    pool = _pool_with_a_warm_instance(profile, 4)
    pool.share_host(10.0, busy_cores)
    latency_ms, billed_ms, cold = pool.serve(10.0, None, 1)
    assert not cold
    assert latency_ms == pytest.approx(want_ms)
    assert billed_ms == pytest.approx(latency_ms * pool.billed_per_p50)
    unmeasured = _pool_with_a_warm_instance(LOCAL, 4)  # 0: not measured, as profiled
    unmeasured.share_host(10.0, busy_cores)
    assert unmeasured.serve(10.0, None, 1)[0] == pytest.approx(WARM_MS)


def _spills(rate: float, duration_s: float) -> Trace:
    t = np.arange(0.0, duration_s, 1.0 / rate)
    zeros = np.zeros(t.size, np.int32)
    return Trace("spills", t, zeros, zeros, (LOCAL.model,), ("default",))


def test_warm_runs_that_need_more_cpu_than_the_host_has_queue():
    """150 spills/s of 20 ms computing runs need 3 cores of 2: the runs slow each other and the
    8 instances fall behind (the gateway queues, then refuses), as live on a saturated host.
    Half the CPU (1.5 cores) fits: most answer in their own time."""
    trace = _spills(150.0, 20.0)
    profile = replace(LOCAL, fn_concurrency=8)
    alone = simulate(trace, "burst-only", profile)
    fits = simulate(trace, "burst-only", replace(profile, fn_warm_cpu_ms=WARM_MS / 2))
    saturated = simulate(trace, "burst-only", replace(profile, fn_warm_cpu_ms=WARM_MS))
    steady = slice(1500, None)  # the last 10 s, past the first cold starts
    assert np.median(alone.latency_ms[steady]) == pytest.approx(WARM_MS + LOCAL.gateway_overhead_ms)
    assert np.median(fits.latency_ms[steady]) < 2 * WARM_MS
    assert np.median(saturated.latency_ms[steady]) > 10 * WARM_MS
    assert saturated.summary["slo_attainment"] < fits.summary["slo_attainment"]


def test_cold_starts_share_what_the_warm_runs_leave():
    """100 warm runs of 10 ms CPU in the last second keep 1 core busy: 2 starts at 10 s then
    share the other one (2 cold starts each, not 1)."""
    profile = replace(LOCAL, fn_warm_cpu_ms=CPU_MS)
    pool = FunctionPool(profile, seed=0)
    pool.warm_started.extend(np.linspace(9.01, 10.0, 100))
    pool.share_host(10.0, 0.0)
    latencies = [pool.serve(10.0, None, i)[0] for i in (1, 2)]
    for i, late_ms, _ in pool.late:
        latencies[i - 1] += late_ms
    assert latencies == pytest.approx([2 * COLD_MS + WARM_MS] * 2)


def test_the_reference_profile_is_unchanged():
    """The production target (Lambda: independent instances) takes no part of this, even with
    a warm CPU given: the same simulation to the last request."""
    trace = _spills(150.0, 5.0)
    ref = SimProfile.reference()
    assert ref.fn_warm_cpu_ms == 0.0
    a = simulate(trace, "burst-only", ref)
    b = simulate(trace, "burst-only", replace(ref, fn_warm_cpu_ms=50.0))
    assert a.summary == b.summary
    assert list(a.latency_ms) == list(b.latency_ms)
