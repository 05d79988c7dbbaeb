"""Queue requests in the price table and the perf model: SQS bills per started 64 KiB, tensors
past a message go by claim check, and the planner's stage cost follows the transport."""

from __future__ import annotations

import pytest

from policies.costs import (
    PriceTable,
    queue_requests,
    queue_transfer_cost_usd,
    store_cost_usd,
)
from policies.perf import Candidate, Deployment, NodeWork, PerfModel
from tests.policies.test_perf import _profile

KIB = 1024
PRICES = PriceTable()


def test_sqs_bills_each_started_64_kib_as_a_request():
    assert queue_requests(PRICES, 0) == 1
    assert queue_requests(PRICES, 64 * KIB) == 1
    assert queue_requests(PRICES, 64 * KIB + 1) == 2
    assert queue_requests(PRICES, 256 * KIB) == 4


def test_a_tensor_through_the_queue_costs_its_chunks_or_a_claim_check():
    q = PRICES.queue_request_usd
    # send + receive of 200 KiB (4 chunks each) and a share of its queue's create/delete
    assert queue_transfer_cost_usd(PRICES, 200 * KIB) == pytest.approx((4 + 4 + 1) * q)
    # past the message limit: pointer messages plus an object PUT and GET
    big = queue_transfer_cost_usd(PRICES, 300 * KIB)
    assert big == pytest.approx(3 * q + PRICES.store_put_usd + PRICES.store_get_usd)
    assert queue_transfer_cost_usd(PRICES, 300 * KIB, max_message_bytes=1024 * KIB) < big


def test_counted_requests_are_priced_by_transport():
    assert store_cost_usd(PRICES, 10, 10) == pytest.approx(10 * 0.000005 + 10 * 0.0000004)
    assert store_cost_usd(PRICES, 0, 0, queue_requests=20) == pytest.approx(20 * 0.0000004)
    assert store_cost_usd(PRICES, 1, 1, 3) == pytest.approx(0.000005 + 0.0000004 + 3 * 0.0000004)


def _stage_cost(store_kind: str, bytes_each: int) -> float:
    works = [NodeWork("conv", "aten.conv2d.default", 2 * 10**9)]
    # with an sqs store, "queue" sends tensors through its queues ("store": its backing store)
    transport = "queue" if store_kind == "sqs" else "store"
    dep = Deployment(transport=transport, store_kind=store_kind, prices=PRICES)
    model = PerfModel(_profile(), dep, works)
    macs = works[0].macs
    k = 4
    cand = Candidate(
        0, 1, "spatial", k, ("conv",), macs, (macs // k,) * k, (bytes_each,) * k,
        (bytes_each,) * k, 0,
    )  # fmt: skip
    return model.stage(cand).cost_usd


def test_the_perf_model_prices_a_stage_by_its_transport():
    """Six remote messages per 4-way stage: small ones are ~12x cheaper through SQS than S3
    (S3 PUTs dominate); past a message, SQS adds pointer messages to the same object requests."""
    small_s3, small_sqs = _stage_cost("s3", 10 * KIB), _stage_cost("sqs", 10 * KIB)
    store_part = 6 * (PRICES.store_put_usd + PRICES.store_get_usd)
    assert small_s3 - small_sqs == pytest.approx(store_part - 6 * 3 * PRICES.queue_request_usd)
    big_s3, big_sqs = _stage_cost("s3", 1024 * KIB), _stage_cost("sqs", 1024 * KIB)
    assert big_sqs - big_s3 == pytest.approx(6 * 3 * PRICES.queue_request_usd)
