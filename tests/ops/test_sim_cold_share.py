"""Cold starts that share the host's cores in the simulator (the embedded function runtime):
processor sharing over the profile's cores, as measured live (``ops/sim/cold_share.py``). Live,
a flash crowd's onset started 8 instances together on 2 cores and all answered 4.9-6.5 s later;
the simulator's old rule ("k under way make the next k + 1 times as long") answered the first
after 1.3 s, so its queued spills drained early and it missed 3 points less than live."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from ops.sim import SimProfile, simulate
from ops.sim.functions import FunctionPool
from ops.traces import Trace

COLD_MS = 1000.0
LOCAL = replace(
    SimProfile.reference(),
    cold_start_ms=COLD_MS,
    cold_start_quantiles_ms=(),
    burst_p50_ms=20.0,
    burst_sigma=0.0,
    fn_concurrency=8,
    cold_start_contention=True,
    fn_host_cores=2,
)


class Pool:
    """A function pool and the latencies of its answers as they end up (a later cold start
    may push an answer back: ``FunctionPool.late``, as the engine applies it)."""

    def __init__(self, profile: SimProfile):
        self.pool = FunctionPool(profile, seed=0)
        self.latency_ms: dict[int, float] = {}

    def serve(self, i: int, now_s: float, slo_ms: float | None = None) -> None:
        self.pool.release(now_s)  # (the engine frees what ended before each arrival)
        served = self.pool.serve(now_s, slo_ms, i)
        assert served is not None
        self.latency_ms[i] = served[0]
        for j, late_ms, _ in self.pool.late:
            self.latency_ms[j] += late_ms
        self.pool.late.clear()


@pytest.mark.parametrize(("starts", "cores"), [(8, 2), (4, 2), (6, 3)])
def test_starts_at_once_on_few_cores_end_together_after_starts_over_cores_times_one(starts, cores):
    pool = Pool(replace(LOCAL, fn_host_cores=cores))
    for i in range(starts):
        pool.serve(i, 10.0)
    want_ms = COLD_MS * starts / cores + 20.0
    assert pool.pool.cold_requests == starts
    assert list(pool.latency_ms.values()) == pytest.approx([want_ms] * starts)


@pytest.mark.parametrize("profile", [LOCAL, replace(LOCAL, cold_start_contention=False)])
def test_a_start_alone_takes_its_cold_start(profile):
    pool = Pool(profile)
    pool.serve(0, 10.0)
    assert pool.latency_ms[0] == pytest.approx(COLD_MS + 20.0)


def test_no_more_starts_than_cores_take_no_longer_than_one_alone():
    pool = Pool(LOCAL)
    pool.serve(0, 10.0)
    pool.serve(1, 10.3)
    assert pool.latency_ms == pytest.approx({0: COLD_MS + 20.0, 1: COLD_MS + 20.0})


def test_a_start_that_joins_pushes_back_the_starts_under_way_and_who_waits_for_them():
    """One core. A starts at 10.0; at 10.1 a spill waits for A's instance (a cold start would
    be longer); at 10.2 B starts: A has 800 ms of work left and gets half the core, so it ends
    at 11.8, not 11.0, and the request waiting for it answers 800 ms later too."""
    profile = replace(LOCAL, fn_host_cores=1, fn_keep_alive_s=1.0)
    pool = Pool(profile)
    pool.serve(0, 0.0)  # a first start, and a warm answer: the gate waits only after one
    pool.serve(1, 1.5, slo_ms=5000.0)
    assert pool.pool.first_warm_s < 2.0
    pool.serve(2, 10.0, slo_ms=5000.0)  # A (the warm instance was reclaimed)
    pool.serve(3, 10.1, slo_ms=5000.0)  # waits for A's instance
    assert pool.pool.waited == 1
    before = dict(pool.latency_ms)
    pool.serve(4, 10.2)  # B, cold: no SLO, so it never waits
    assert pool.pool.cold_requests == 3
    assert pool.latency_ms[2] == pytest.approx(before[2] + 800.0)
    assert pool.latency_ms[3] == pytest.approx(before[3] + 800.0)
    assert pool.latency_ms[4] == pytest.approx(1800.0 + 20.0)  # 200 ms after A ends
    # the instances' busy times moved with them: the next spill finds A's free at 11.82+
    free_s = sorted(f for f, _ in pool.pool.busy)
    assert free_s[0] == pytest.approx(10.0 + 1.8 + 0.04)


def test_independent_cold_starts_are_unchanged_without_contention():
    """The production target (Lambda): every start takes its own cold start, whatever else
    starts; nothing is pushed back."""
    profile = replace(LOCAL, cold_start_contention=False)
    pool = Pool(profile)
    for i in range(8):
        pool.serve(i, 10.0)
    assert list(pool.latency_ms.values()) == pytest.approx([COLD_MS + 20.0] * 8)
    assert SimProfile.reference().cold_start_contention is False


def test_the_simulation_records_the_pushed_back_latencies():
    """Eight spills at once (burst-only) on 2 cores: every answer's recorded latency is about
    4 cold starts, and the bill grows with the time the starts took."""
    t = np.full(8, 5.0) + np.arange(8) * 1e-4
    zeros = np.zeros(t.size, np.int32)
    trace = Trace("onset", t, zeros, zeros, (LOCAL.model,), ("default",))
    shared = simulate(trace, "burst-only", LOCAL).summary
    alone = simulate(trace, "burst-only", replace(LOCAL, cold_start_contention=False)).summary
    assert shared["cold_starts"] == alone["cold_starts"] == 8
    assert alone["p50_ms"] == pytest.approx(COLD_MS + 20.0, rel=0.02)
    assert shared["p50_ms"] == pytest.approx(4 * COLD_MS + 20.0, rel=0.02)
    assert shared["function_gb_s"] > 3 * alone["function_gb_s"]


def test_a_warm_pool_start_shares_the_cores_with_the_starts_under_way():
    """The control loop's pool starts (``keep_warm``) are cold starts on the same cores: one
    started 500 ms into a request's cold start on one core pushes that request back 500 ms,
    and its bill with it (this profile bills a cold start's whole time)."""
    pool = Pool(replace(LOCAL, fn_host_cores=1))
    pool.serve(0, 10.0)
    pool.pool.keep_warm(2, 10.5)
    assert pool.pool.prewarmed == 1
    assert pool.pool.late == [(0, pytest.approx(500.0), pytest.approx(500.0))]


def _processor_sharing(starts: list[tuple[float, float]], cores: float) -> list[float]:
    """Each start's end, stepped in 0.1 ms: (begin s, work ms) served at min(1, cores / n)."""
    left = [work for _, work in starts]
    ends = [0.0] * len(starts)
    t, dt = 0.0, 1e-4
    while any(left):
        active = [k for k, (begin, _) in enumerate(starts) if begin <= t and left[k] > 0]
        for k in active:
            left[k] = max(left[k] - dt * 1000.0 * min(1.0, cores / len(active)), 0.0)
            if left[k] == 0.0:
                ends[k] = t + dt
        t += dt
    return ends


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_staggered_starts_end_when_processor_sharing_ends_them(seed):
    """Starts joining at random times with random cold starts, ending at different times:
    each request's final latency is its start's end under processor sharing on 2 cores (a
    step-by-step reference)."""
    rng = np.random.default_rng(seed)
    # all begin before any could end (else the next spill takes its idle instance, warm)
    begins = np.sort(rng.uniform(10.0, 10.3, 8)).tolist()
    cold = rng.uniform(400.0, 1500.0, 8).tolist()
    pool = Pool(LOCAL)
    for k, (begin, work) in enumerate(zip(begins, cold, strict=True)):
        pool.pool.cold_ms[(pool.pool.cold_i + 1) & 4095] = work  # the next draw
        pool.serve(k, begin)
    assert pool.pool.cold_requests == 8
    want = _processor_sharing(list(zip(begins, cold, strict=True)), 2.0)
    got = [begins[k] + (pool.latency_ms[k] - 20.0) / 1000.0 for k in range(8)]
    assert got == pytest.approx(want, abs=2e-3)
