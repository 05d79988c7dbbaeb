"""Per-stage transports: the planner picks inline, the object store or the queue for each split
stage from the transfer fits and prices, exactly (checked against brute force)."""

from __future__ import annotations

import dataclasses
import functools

import pytest

from policies.perf import Candidate, Deployment, NodeWork, PerfModel
from policies.planner import (
    Limits,
    cheapest_meeting_slo,
    latency_optimal,
    stage_transports,
    with_transports,
)
from policies.profile import TransferFit

from tests.support.plan_paths import all_plans

from .test_planner import LIMITS, _fits, _instance, _profile

MB = 1 << 20


def _per_stage(seed: int, store_kind: str = "sqs", max_payload_bytes: int = MB, positions: int = 7):
    model, cands, end = _instance(seed, positions)
    profile = dataclasses.replace(
        _profile(),
        transfer={
            "inline": TransferFit(0.2, 30.0),  # base64 through the invocation: slow per MB
            "dir": TransferFit(0.6, 1.0),
            "s3": TransferFit(15.0, 12.0),
            "sqs": TransferFit(6.0, 25.0),
        },
    )
    dep = dataclasses.replace(
        model.dep,
        transport="per-stage",
        store_kind=store_kind,
        object_store_kind="s3",
        max_payload_bytes=max_payload_bytes,
    )
    return PerfModel(profile, dep, [], ""), cands, end, model


def _expanded_plans(model, cands, end):
    """Every plan with every transport per split stage (what the planner must search)."""
    return all_plans(with_transports(model, cands), end)


def test_transports_weighed_depend_on_the_deployment():
    assert stage_transports(Deployment(transport="per-stage", store_kind="sqs")) == (
        "inline",
        "store",
        "queue",
    )
    assert stage_transports(Deployment(transport="per-stage", store_kind="s3")) == (
        "inline",
        "store",
    )
    assert stage_transports(Deployment(transport="auto", store_kind="sqs")) == ()


def test_inline_is_offered_only_where_the_payload_fits():
    model, cands, _, _ = _per_stage(0, max_payload_bytes=MB)
    for c in with_transports(model, cands):
        if c.transport == "inline":
            assert max(c.bytes_in[1:] + c.bytes_out[1:], default=0) * 4 / 3 < MB


def _with_node_times(model, base):
    model.node_ms = base.node_ms  # the same compute as the instance's model
    return model


# each split stage triples the plans: 5 positions keep the brute force to seconds (7 took ~50 s)
BRUTE_POSITIONS = 5


@functools.cache
def _brute_force(seed: int) -> tuple:
    """Every plan of ``_per_stage(seed)`` with every transport, with its prediction: computed
    once per seed for the two brute-force tests (the planner gets its own fresh model)."""
    model, cands, end, base = _per_stage(seed, positions=BRUTE_POSITIONS)
    model = _with_node_times(model, base)
    return tuple((p, model.predict(p)) for p in _expanded_plans(model, cands, end))


@pytest.mark.parametrize("seed", range(3))
def test_latency_optimal_per_stage_matches_brute_force(seed):
    model, cands, _, base = _per_stage(seed, positions=BRUTE_POSITIONS)
    model = _with_node_times(model, base)
    limits = LIMITS[1]
    best = min(pr.mean_ms for p, pr in _brute_force(seed) if _fits(p, limits))
    got = latency_optimal(model, cands, limits)
    assert got.prediction.mean_ms == pytest.approx(best, rel=1e-9)  # what it minimises
    assert all(c.transport for c in got.stages if c.split != "serial")


@pytest.mark.parametrize("seed", range(3))
def test_cheapest_per_stage_matches_brute_force(seed):
    model, cands, _, base = _per_stage(seed, positions=BRUTE_POSITIONS)
    model = _with_node_times(model, base)
    preds = _brute_force(seed)
    slo = sorted(pr.p99_ms for _, pr in preds)[len(preds) // 2]
    limits = Limits(10**12, 10**12)
    ok = [pr.cost_usd for p, pr in preds if pr.p99_ms <= slo]
    got = cheapest_meeting_slo(model, cands, limits, slo, 0.99)
    assert got.prediction.cost_usd == pytest.approx(min(ok), rel=1e-9)


def _three_stages():
    """Three conv stages split 4 ways moving 10 KB, 200 KB and 3 MB per leg, under a 128 KiB
    invocation payload limit."""
    sizes = (10_000, 200_000, 3_000_000)
    works = [NodeWork(f"n{i}", "aten.conv2d.default", 5 * 10**10) for i in range(len(sizes))]
    cands = [
        Candidate(i, i + 1, "serial", 0, (w.name,), w.macs, (w.macs,), (), (), 0)
        for i, w in enumerate(works)
    ]
    for i, (w, nbytes) in enumerate(zip(works, sizes, strict=True)):
        legs, tensors = (w.macs // 4,) * 4, (nbytes,) * 4
        cands.append(
            Candidate(i, i + 1, "spatial", 4, (w.name,), w.macs, legs, tensors, tensors, 0)
        )
    model, _, _, _ = _per_stage(0, max_payload_bytes=128 * 1024)
    return PerfModel(model.profile, model.dep, works, ""), cands


# 10 KB: nothing beats base64 in the event; 200 KB (past the payload): SQS's 6 ms + 25 ms/MB
# beats S3's 15 + 12; 3 MB: S3 beats SQS (a claim check past 256 KiB besides)
MIXED = ["inline", "queue", "store"]


def test_a_plan_mixes_transports_where_that_is_fastest():
    model, cands = _three_stages()
    got = latency_optimal(model, cands, LIMITS[0])
    assert [c.transport for c in got.stages] == MIXED
    for t in ("store", "queue"):  # any one transport for all (inline cannot) is slower
        one = [dataclasses.replace(c, transport=t) for c in got.stages]
        assert model.predict(one).mean_ms > got.prediction.mean_ms


def test_the_cheapest_plan_meeting_the_slo_mixes_them_too():
    model, cands = _three_stages()
    fastest = latency_optimal(model, cands, LIMITS[0]).prediction.p99_ms
    got = cheapest_meeting_slo(model, cands, LIMITS[0], fastest * 1.01, 0.99)
    # the same choice: inline is free, 200 KB is 4 SQS requests each way (cheaper than an S3
    # PUT), and 3 MB would be a claim check (an S3 PUT and GET plus the messages)
    assert [c.transport for c in got.stages] == MIXED
