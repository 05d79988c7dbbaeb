"""The performance model: fork-join waits for the slowest leg, and costs add up as billed."""

from __future__ import annotations

import random

import numpy as np
import pytest

from policies.costs import PriceTable
from policies.perf import Candidate, Deployment, NodeWork, PerfModel
from policies.profile import ComputeFit, ModelTimes, Profile, Quantiles, TransferFit

MB = 1 << 20


def _profile(**kw) -> Profile:
    overhead = Quantiles.from_samples([2.0 + 0.2 * i for i in range(20)] + [40.0])
    base = dict(
        source="test",
        cores=2,
        invoke_warm_ms={1: overhead, 4: overhead},
        invoke_cold_ms=Quantiles.constant(900.0),
        master_overhead_ms=Quantiles.constant(5.0),
        transfer={
            "inline": TransferFit(0.5, 4.0),
            "dir": TransferFit(1.0, 1.0),
            "s3": TransferFit(20.0, 10.0),
        },
        compute=ComputeFit({"conv": 10.0, "linear": 10.0, "pool": 1.0, "other": 1.0}, 0.0),
        split_slowdown={"spatial": {1: 1.0, 4: 1.0}, "output": {1: 1.0}},
        compute_cv=0.0,
    )
    base.update(kw)
    return Profile(**base)


WORKS = [NodeWork("conv", "aten.conv2d.default", 2 * 10**9)]  # 20 ms on one thread


def _split(k: int, bytes_each: int = 1000) -> Candidate:
    macs = WORKS[0].macs
    return Candidate(
        0,
        1,
        "spatial",
        k,
        ("conv",),
        macs,
        (macs // k,) * k,
        (bytes_each,) * k,
        (bytes_each,) * k,
        0,
    )


def test_fork_join_waits_for_the_slowest_of_k_legs():
    """The stage's mean is the mean of the max of its legs (the master's own and k-1 remote
    round trips), not the mean of one leg."""
    profile = _profile()
    model = PerfModel(profile, Deployment(inline_limit_bytes=10**6), WORKS)
    est = model.stage(_split(4))
    rng = random.Random(0)
    t = model.transfer_ms(1000)
    own = 20.0 / 4  # leg 0: a quarter of the work, on the master
    remote = t + own  # a remote leg: its input and output, half each side, and its work
    draws = [
        max(own, remote + max(profile.invoke_ms(3).at(rng.random()) for _ in range(3)))
        for _ in range(100000)
    ]
    simulated = sum(draws) / len(draws) + 3 * t  # the master's halves of 3 inputs and outputs
    assert est.mean_ms == pytest.approx(simulated, rel=0.02)
    one_leg = profile.invoke_ms(3).at(0.5)
    assert est.mean_ms > one_leg + remote + 3 * t + 1.0  # the tail of one leg in three shows


def test_measured_node_times_beat_the_fit_and_scale_with_batch():
    profile = _profile(models={"m": ModelTimes((1, 3, 8, 8), {"conv": 7.0})})
    at1 = PerfModel(profile, Deployment(), WORKS, "m", (1, 3, 8, 8), batch=1)
    at4 = PerfModel(profile, Deployment(), WORKS, "m", (4, 3, 8, 8), batch=4)
    other_shape = PerfModel(profile, Deployment(), WORKS, "m", (1, 3, 16, 16))
    assert at1.serial_ms(["conv"]) == 7.0
    assert at4.serial_ms(["conv"]) == pytest.approx(28.0)
    assert other_shape.serial_ms(["conv"]) == pytest.approx(20.0)  # the fit, not the table


def test_cost_adds_gb_seconds_requests_and_store_requests():
    prices = PriceTable()
    dep = Deployment(
        memory_mb=2048, master_memory_mb=1024, inline_limit_bytes=64 * 1024, prices=prices
    )
    model = PerfModel(_profile(), dep, WORKS)
    serial = model.stage(Candidate(0, 1, "serial", 0, ("conv",), 0, (0,), (), (), 0))
    assert serial.cost_usd == pytest.approx(20.0 / 1000 * 1.0 * prices.fn_usd_per_gb_s)
    small, big = model.stage(_split(4, 1000)), model.stage(_split(4, 2 * MB))
    store_requests = 6 * (prices.store_put_usd + prices.store_get_usd)
    assert big.cost_usd - small.cost_usd > store_requests  # 6 remote messages via the store
    # a remote leg bills its own work at 2 GB, plus a request each
    leg_floor = 3 * (prices.fn_usd_per_request + 5.0 / 1000 * 2 * prices.fn_usd_per_gb_s)
    assert small.cost_usd > leg_floor


def test_plan_prediction_sums_stages_and_reads_percentiles():
    model = PerfModel(_profile(), Deployment(inline_limit_bytes=10**6), WORKS)
    serial = Candidate(0, 1, "serial", 0, ("conv",), 0, (0,), (), (), 0)
    pred = model.predict([serial, _split(4)])
    fixed = model.fixed()
    assert pred.mean_ms == pytest.approx(fixed.mean_ms + sum(e.mean_ms for e in pred.stages))
    assert pred.p50_ms == pytest.approx(pred.mean_ms)
    assert pred.p99_ms > pred.p50_ms
    assert pred.percentile_ms(0.999) > pred.p99_ms


def test_more_legs_than_cores_slow_each_leg():
    profile = _profile(split_slowdown={"spatial": {1: 1.0, 2: 1.1}})
    assert profile.slowdown("spatial", 2) == 1.1
    assert profile.slowdown("spatial", 4) == pytest.approx(2.2)  # 4 legs on 2 cores
    assert profile.slowdown("output", 3) == 1.5  # unmeasured kind: 3 legs share 2 cores


def test_a_leg_pays_its_per_node_time_whatever_its_share():
    """Dispatch, cropping and padding per node do not shrink with a leg's share of the work:
    a measured per-node time is added to every leg, so splitting many tiny nodes stops
    looking free while big convolutions still pay."""
    base = PerfModel(_profile(), Deployment(inline_limit_bytes=10**6), WORKS)
    per_node = PerfModel(
        _profile(split_node_ms={"spatial": {2: 3.0}}),
        Deployment(inline_limit_bytes=10**6),
        WORKS,
    )
    plain, with_nodes = base.stage(_split(2)), per_node.stage(_split(2))
    assert with_nodes.mean_ms == pytest.approx(plain.mean_ms + 3.0, rel=0.05)
    assert per_node.profile.node_overhead_ms("spatial", 4) == 3.0  # nearest measured below
    assert per_node.profile.node_overhead_ms("output", 2) == 0.0  # not measured: nothing


def test_a_leg_pays_its_fixed_start_once_whatever_its_nodes():
    """A leg's fixed start (the master's leg: once its remote requests are out, 1-1.5 ms
    after its sends) is paid once per leg, not per node: a stage of many nodes is not
    charged it many times over, and the master's own leg pays its own."""
    dep = Deployment(inline_limit_bytes=10**6)
    base = PerfModel(_profile(), dep, WORKS)
    per_leg = PerfModel(
        _profile(
            split_slowdown={"spatial": {1: 1.0, 4: 1.0}, "spatial/master": {2: 1.0}},
            split_leg_ms={"spatial": {2: 2.0}, "spatial/master": {2: 6.0}},
        ),
        dep,
        WORKS,
    )
    assert per_leg.profile.leg_overhead_ms("spatial", 4) == 2.0
    assert per_leg.profile.leg_overhead_ms("output", 2) == 0.0  # not measured: nothing
    # two legs of 10 ms of work: the master's starts 6 ms late, the remote one pays 2 ms
    stage, plain = per_leg.stage(_split(2)).mean_ms, base.stage(_split(2)).mean_ms
    assert stage >= 16.0 and stage > plain + 2.0
    # a stage of two nodes (half the work each) pays the start once, not twice
    halves = [
        NodeWork("a", "aten.conv2d.default", 10**9),
        NodeWork("b", "aten.conv2d.default", 10**9),
    ]
    two = PerfModel(per_leg.profile, dep, halves)
    macs = 2 * 10**9
    c = Candidate(
        0, 2, "spatial", 2, ("a", "b"), macs, (macs // 2,) * 2, (1000,) * 2, (1000,) * 2, 0
    )
    assert two.stage(c).mean_ms == pytest.approx(stage, rel=1e-6)


def test_profile_json_keeps_the_per_leg_time():
    profile = _profile(split_leg_ms={"spatial/master": {2: 1.25}})
    assert Profile.from_json(profile.to_json()).split_leg_ms == {"spatial/master": {2: 1.25}}
    raw = profile.to_json()
    del raw["split_leg_ms"]  # profiles written before the field still load
    assert Profile.from_json(raw).split_leg_ms == {}


def test_profile_json_keeps_the_per_node_leg_time():
    profile = _profile(split_node_ms={"spatial": {2: 0.125}})
    again = Profile.from_json(profile.to_json())
    assert again.split_node_ms == {"spatial": {2: 0.125}}
    raw = profile.to_json()
    del raw["split_node_ms"]  # profiles written before the field still load
    assert Profile.from_json(raw).split_node_ms == {}


def test_predicted_p50_is_the_median_when_the_master_invocation_is_skewed():
    """Most master invocations take 5 ms and one in five 45 ms (a 13 ms mean): the plan's
    median is 5 ms plus the rest, not the mean; a symmetric invocation keeps p50 at the mean."""
    skewed = Quantiles.from_samples([5.0] * 16 + [45.0] * 4)
    for overhead, median_ms in ((skewed, 5.0), (Quantiles.constant(13.0), 13.0)):
        model = PerfModel(_profile(master_overhead_ms=overhead), Deployment(), WORKS)
        pred = model.predict([_split(1)])  # one leg, compute_cv 0: the stage has no spread
        rest = pred.mean_ms - float(np.mean(overhead.values_ms))  # stage, request's tensors
        assert pred.p50_ms == pytest.approx(median_ms + rest, abs=0.7)
    assert pred.mean_ms == pytest.approx(pred.p50_ms)


def test_the_masters_leg_can_take_more_than_an_even_share():
    """Leg 0 runs on the master with no round trip: with the master's legs measured apart
    (``spatial/master``), a stage that gives leg 0 more work waits less than an even one,
    and the master's own fit, not the workers', prices leg 0."""
    macs = WORKS[0].macs
    slow = {"spatial": {1: 1.0, 2: 1.2}, "spatial/master": {2: 1.0}, "output": {1: 1.0}}
    model = PerfModel(_profile(split_slowdown=slow), Deployment(inline_limit_bytes=10**6), WORKS)

    def stage(master_share: float) -> Candidate:
        own = int(macs * master_share)
        return Candidate(
            0, 1, "spatial", 2, ("conv",), macs, (own, macs - own), (1000,) * 2, (1000,) * 2, 0
        )

    even, lead = model.stage(stage(0.5)), model.stage(stage(0.6))
    assert lead.mean_ms < even.mean_ms - 2.0
    # all on the master: its own fit (1.0x of 20 ms, not the workers' 24 ms), plus the
    # master's transfer halves and the odd slow round trip of the empty remote leg
    assert 20.0 < model.stage(stage(1.0)).mean_ms < 21.5
