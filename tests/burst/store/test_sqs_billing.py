"""The SQS transport's requests are counted as SQS bills them (each started 64 KiB of a payload,
queues made and deleted) and the claim checks as object requests, so the ledger prices a burst
request's transfers at SQS rates, not S3's. Against moto's SQS server on loopback."""

from __future__ import annotations

import os
import uuid

import pytest

from burst.store import make_store
from burst.store.counting import CountingStore
from burst.store.encrypted import new_request_key
from policies.costs import PriceTable, store_cost_usd
from tests.support.s3_server import S3_TEST_CREDENTIALS, S3_TEST_REGION, s3_endpoint  # noqa: F401


def _store(endpoint: str, root, **kw):
    return make_store(
        {
            "kind": "sqs",
            "endpoint_url": endpoint,
            "region": S3_TEST_REGION,
            "queue_prefix": f"b{uuid.uuid4().hex[:8]}-",
            "backing": {"kind": "dir", "root": str(root)},
            "missing_after_s": 0.2,
            **S3_TEST_CREDENTIALS,
            **kw,
        }
    )


async def test_inline_tensors_are_queue_requests_and_claim_checks_object_requests(
    s3_endpoint,  # noqa: F811
    tmp_path,
):
    inner = _store(s3_endpoint, tmp_path, encrypt=False)
    store = CountingStore(inner)
    try:
        small, large = os.urandom(200 * 1024), os.urandom(300 * 1024)  # the limit is 256 KiB
        await store.put("req/r1/s1/w1/in", small)  # CreateQueue + a send of 4 chunks
        assert (store.queue_requests, store.puts, store.gets) == (5, 0, 0)
        await store.put("req/r1/s1/w2/in", large)  # CreateQueue + a pointer; the bytes: a PUT
        assert (store.queue_requests, store.puts, store.gets) == (7, 1, 0)
        assert await store.get("req/r1/s1/w1/in") == small  # a receive of 4 chunks
        assert (store.queue_requests, store.puts, store.gets) == (11, 1, 0)
        assert await store.get("req/r1/s1/w2/in") == large  # a receive and the object's GET
        assert (store.queue_requests, store.puts, store.gets) == (12, 1, 1)
        await store.put("plans/p1/weights", b"w")  # not per request: the backing store only
        assert (store.queue_requests, store.puts) == (12, 2)
        await store.delete_prefix("req/r1/")  # ListQueues + 2 DeleteQueue, and the store's LIST
        assert (store.queue_requests, store.puts) == (15, 3)
    finally:
        await inner.close()
    prices = PriceTable()
    sqs_usd = store_cost_usd(prices, store.puts, store.gets, store.queue_requests)
    assert sqs_usd == pytest.approx(
        15 * prices.queue_request_usd + 3 * prices.store_put_usd + 1 * prices.store_get_usd
    )
    # what the ledger charged before: every call on the store at S3's request prices
    assert sqs_usd < store_cost_usd(prices, 9, 3)


async def test_counts_reach_through_the_encryption_wrapper(s3_endpoint, tmp_path):  # noqa: F811
    sealed = _store(s3_endpoint, tmp_path)  # encrypted by default
    store = CountingStore(sealed.for_request(new_request_key()))
    try:
        await store.put("req/r2/s1/w1/in", b"x" * 1000)
        assert await store.get("req/r2/s1/w1/in") == b"x" * 1000
        assert (store.queue_requests, store.puts, store.gets) == (3, 0, 0)
    finally:
        await sealed.close()


async def test_object_stores_still_count_one_request_per_call(tmp_path):
    inner = make_store({"kind": "dir", "root": str(tmp_path)})
    store = CountingStore(inner)
    await store.put("req/r3/in", b"x")
    await store.get("req/r3/in")
    await store.delete_prefix("req/r3/")
    assert (store.puts, store.gets, store.queue_requests) == (2, 1, 0)
    await inner.close()
