"""Cold starts on the embedded runtime share the host with its other work (``ops/sim/cold_share.py``,
``burst_path.host_work``): the cores they share are the profile's less what the simulator knows
is busy, the gateway's and load generator's CPU per request at the arrival rate and the local VM
replicas serving a batch. Live, a flash crowd's 8 onset starts ran as if on 1.2-1.55 of the 2
cores while the gateway, load generator and model servers served 100-160 requests/s."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

from ops.sim import SimProfile, simulate
from ops.sim.burst_path import host_work
from ops.sim.cold_share import MIN_CORES
from ops.sim.functions import FunctionPool
from ops.sim.vm import VmPool
from ops.traces import Trace

from tests.ops.test_sim_cold_share import COLD_MS, LOCAL  # the 2-core local runtime profile


def _onset() -> Trace:
    """A spill at 4.5 s (one start under way), then 8 spills together at 5 s."""
    t = np.concatenate([[4.5], np.full(8, 5.0) + np.arange(8) * 1e-4])
    zeros = np.zeros(t.size, np.int32)
    return Trace("onset", t, zeros, zeros, (LOCAL.model,), ("default",))


def test_the_gateways_cpu_at_the_arrival_rate_leaves_the_starts_fewer_cores():
    """At 5 s one request arrived in the second before, at 1 s of CPU each: 1 of the 2 cores
    is busy. The 8 new starts and the one under way (500 ms left) share 1 core, not 2: they
    answer after 8.5 cold starts instead of 4.25. Not measured (0): nothing deducted."""
    trace = _onset()
    local = replace(LOCAL, fn_concurrency=9)
    busy = replace(local, host_cpu_ms_per_request=1000.0)
    alone = simulate(trace, "burst-only", local).latency_ms[1:]
    shared = simulate(trace, "burst-only", busy).latency_ms[1:]
    assert np.median(alone) == pytest.approx(4.25 * COLD_MS + 20.0, rel=0.02)
    assert np.median(shared) == pytest.approx(8.5 * COLD_MS + 20.0, rel=0.02)


def _sim_with_a_replica_serving(profile: SimProfile, at_s: float) -> SimpleNamespace:
    """What ``host_work`` reads of the engine: one VM replica serving a batch from ``at_s``."""
    arrivals = [at_s]
    lat = [0.0]
    vm = VmPool(profile, arrivals, lat, [0], 1, np.random.default_rng(0))
    replica = vm.launch(0.0, 0.0)
    vm.enqueue(replica, 0)
    vm.advance(at_s)
    fn = FunctionPool(profile, seed=0)
    return SimpleNamespace(
        p=profile, arr=arrivals * 3, vm=vm, fn=fn, lat=[0.0] * 3, tenant_of=[0] * 3,
        fn_billed_by_tenant=[0.0],
    )  # fmt: skip


@pytest.mark.parametrize(
    ("replica_cores", "want_cores"), [(0.0, 2.0), (1.0, 1.0), (5.0, MIN_CORES)]
)
def test_a_replica_serving_a_batch_leaves_the_starts_fewer_cores(replica_cores, want_cores):
    """Two starts at 10 s on 2 cores take one cold start each; with a replica serving that
    keeps a core busy, they share the one left (2 cold starts each); with more busy than the
    host has, they still progress on ``MIN_CORES``."""
    profile = replace(LOCAL, vm_replica_cores=replica_cores)
    sim = _sim_with_a_replica_serving(profile, 10.0)
    assert sim.vm.serving(10.0) == 1
    if replica_cores:
        host_work(sim, 1, 10.0)
    latencies = [sim.fn.serve(10.0, None, i)[0] for i in (1, 2)]
    for i, late_ms, _ in sim.fn.late:
        latencies[i - 1] += late_ms
    want_ms = COLD_MS * 2 / min(want_cores * 1.0, 2.0) + 20.0
    assert latencies == pytest.approx([want_ms, want_ms])


def test_the_starts_get_their_cores_back_when_the_other_work_stops():
    """One start on 1 core left: half its work done by 11 s, then the host frees up and the
    rest runs at full speed, so it is up at 11.5 s, and the answer it carries comes earlier."""
    pool = FunctionPool(replace(LOCAL, vm_replica_cores=1.0), seed=0)
    pool.share_host(10.0, 1.5)  # 0.5 cores left
    latency_ms = pool.serve(10.0, None, 0)[0]
    assert latency_ms == pytest.approx(2 * COLD_MS + 20.0)
    pool.share_host(11.0, 0.0)
    [(i, late_ms, late_billed_ms)] = pool.late
    assert (i, late_ms) == (0, pytest.approx(-500.0))
    assert late_billed_ms < 0  # billed as it runs: the shorter start bills less


def test_the_reference_profile_is_unchanged():
    """The production target (independent cold starts) deducts nothing, even with the host's
    work given: the same simulation to the last request."""
    trace = _onset()
    ref = SimProfile.reference()
    assert (ref.host_cpu_ms_per_request, ref.vm_replica_cores) == (0.0, 0.0)
    given = replace(ref, host_cpu_ms_per_request=10.0, vm_replica_cores=1.0)
    a, b = simulate(trace, "burst-only", ref), simulate(trace, "burst-only", given)
    assert a.summary == b.summary
    assert list(a.latency_ms) == list(b.latency_ms)
