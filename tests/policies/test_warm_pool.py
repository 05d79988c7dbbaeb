"""The learnt warm pool of the predictive scaler (``policies/autoscaling/warm_pool.py``): the
instances a burst's spill kept busy stay asked for over the horizon after it, so the next
onset finds them warm, and keeping them costs pings, not provisioned concurrency."""

import math
from dataclasses import replace

import pytest

from policies.autoscaling import Predictive
from policies.autoscaling.warm_pool import BurstPool, ping_interval_s
from policies.costs import PriceTable
from policies.state import BurstState, LiveState, ModelStats, VmState

CURVE = ((1, 20.0), (8, 48.0))  # one replica: 8 rows / 48 ms = 166.7 req/s at full batches
FULL = 8 / 48e-3


def _state(now_s, rate, *, in_flight=0, cold=0):
    return LiveState(
        now_s,
        VmState(1, 0, 0, max_batch_size=8, desired_replicas=1),
        True,
        BurstState(in_flight=in_flight, recent_cold_starts=cold, memory_mb=1024),
        {"m": ModelStats(vm_service_ms_by_batch=CURVE)},
        arrival_rate_short_per_s=rate,
    )


def _run(scaler, rates):
    """One decision a second for each rate; (time, warm functions, their cost a second)."""
    rows = []
    for t, rate in enumerate(rates):
        d = scaler.decide(_state(float(t), rate))
        rows.append((t, d.warm_functions, d.warm_cost_usd_per_s))
    return rows


def _scaler(**kw):
    return Predictive(
        min_replicas=1, max_replicas=1, burst_latency_s=0.1, instances_per_burst_request=1, **kw
    )


BURST = [50.0] * 60 + [566.7] * 20 + [50.0] * 700  # 400 req/s over the VM for 20 s


def test_a_bursts_spill_is_kept_warm_for_the_horizon_after_it_and_then_let_go():
    rows = _run(_scaler(warm_pool_horizon_s=600.0), BURST)
    assert all(w == 0 for t, w, _ in rows if t < 60)  # nothing before any burst
    want = math.ceil((566.7 - FULL) * 0.1)  # 400 req/s x 100 ms: 41 instances busy
    after = [w for t, w, _ in rows if 80 <= t < 60 + 600]
    assert after and all(w == want for w in after)  # between bursts: what the next needs
    assert all(w == 0 for t, w, _ in rows if t >= 80 + 600)  # none seen for the horizon


def test_without_a_pool_nothing_is_kept_warm_after_a_burst():
    rows = _run(_scaler(), BURST)
    assert all(w == 0 for _, w, _ in rows)
    rows = _run(_scaler(max_warm_functions=1000), BURST)  # the forecast's pool: only in it
    assert all(w == 0 for t, w, _ in rows if t >= 120)


def test_keeping_the_pool_costs_its_pings_not_provisioned_concurrency():
    rows = _run(_scaler(warm_pool_horizon_s=600.0), BURST)
    _, warm, cost = rows[200]
    prices = PriceTable()
    ping = 0.1 * 1.0 * prices.fn_usd_per_gb_s + prices.fn_usd_per_request  # 100 ms at 1 GB
    assert cost == pytest.approx(warm * ping / ping_interval_s())
    assert cost < warm * prices.fn_provisioned_usd_per_gb_s  # held, it would cost more


def test_the_learnt_pool_respects_the_cap():
    rows = _run(_scaler(warm_pool_horizon_s=600.0, max_warm_functions=25), BURST)
    assert max(w for _, w, _ in rows) == 25


def test_requests_in_flight_during_a_cold_start_do_not_size_the_pool():
    """In flight during a cold start, requests count its ~1 s latency, ~9x a warm run's:
    they would oversize the pool. Queued for warm instances, they are what it must hold."""
    pool = BurstPool(600.0)
    assert pool.sample(_state(0.0, 0.0, in_flight=500, cold=300), FULL, 0.1, 1) == 0
    assert pool.sample(_state(1.0, 0.0, in_flight=60), FULL, 0.1, 1) == 60
    assert pool.sample(_state(2.0, 0.0, in_flight=10), FULL, 0.1, 2) == 60  # the most seen


def test_requests_queued_behind_busy_instances_do_not_size_the_pool():
    """In flight beyond the instances up, requests wait for one: the pool is the instances the
    spill kept busy, not the queue (it grows as instances started for the queue are seen)."""
    pool = BurstPool(600.0)

    def state(now_s, in_flight, warm):
        s = _state(now_s, 0.0, in_flight=in_flight)
        return replace(s, burst=replace(s.burst, warm_instances=warm))

    assert pool.sample(state(0.0, 209, 105), FULL, 0.1, 1) == 105
    assert pool.sample(state(1.0, 150, 160), FULL, 0.1, 1) == 150


def test_pings_come_within_the_platforms_keep_alive():
    assert ping_interval_s(600.0) == pytest.approx(480.0)
    assert ping_interval_s(300.0) < 300.0  # the local runtime's default
    assert ping_interval_s(None) == 240.0  # unknown (Lambda: 5-15 minutes)
