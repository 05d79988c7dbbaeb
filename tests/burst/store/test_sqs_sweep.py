"""Per-request queues a crashed master left are swept once older than any live request, and
nothing else is: against moto's SQS server on loopback."""

from __future__ import annotations

import asyncio
import time
import uuid

import boto3

from burst.store import make_store
from burst.store.sqs_sweep import OrphanSweeper, stop_sweeper, sweep_orphan_queues
from tests.support.s3_server import S3_TEST_CREDENTIALS, S3_TEST_REGION, s3_endpoint  # noqa: F401


def _cfg(endpoint, root, prefix, **kw) -> dict:
    return {
        "kind": "sqs",
        "endpoint_url": endpoint,
        "region": S3_TEST_REGION,
        "queue_prefix": prefix,
        "backing": {"kind": "dir", "root": str(root)},
        **S3_TEST_CREDENTIALS,
        **kw,
    }


def _queues(endpoint: str, prefix: str) -> list[str]:
    client = boto3.client(
        "sqs", endpoint_url=endpoint, region_name=S3_TEST_REGION, **S3_TEST_CREDENTIALS
    )
    urls = client.list_queues(QueueNamePrefix=prefix).get("QueueUrls", [])
    return sorted(u.rsplit("/", 1)[1] for u in urls)


async def test_old_request_queues_go_young_ones_and_other_queues_stay(s3_endpoint, tmp_path):  # noqa: F811
    prefix = f"s{uuid.uuid4().hex[:8]}-"
    store = make_store(_cfg(s3_endpoint, tmp_path, prefix, encrypt=False))
    other = boto3.client(
        "sqs", endpoint_url=s3_endpoint, region_name=S3_TEST_REGION, **S3_TEST_CREDENTIALS
    )
    other.create_queue(QueueName=prefix + "jobs")  # not a per-request queue: never swept
    try:
        # a master that crashed mid-request: its input, a leg's queue and its output remain
        await store.put("req/crashed/input0", b"x")
        await store.put("req/crashed/s1/w1/in", b"y")
        await store.put("resp/crashed/output0", b"z")
        left = _queues(s3_endpoint, prefix)
        assert len(left) == 4
        now = time.time()
        # none is older than a live request may be: nothing goes
        assert await sweep_orphan_queues(store, older_than_s=600, now_unix_s=now) == []
        assert _queues(s3_endpoint, prefix) == left
        swept = await sweep_orphan_queues(store, older_than_s=600, now_unix_s=now + 601)
        assert sorted(swept) == [n for n in left if n != prefix + "jobs"]
        assert _queues(s3_endpoint, prefix) == [prefix + "jobs"]
    finally:
        await store.close()


async def test_the_sweeper_runs_for_a_sealed_sqs_store_and_stops(s3_endpoint, tmp_path):  # noqa: F811
    prefix = f"s{uuid.uuid4().hex[:8]}-"
    store = make_store(_cfg(s3_endpoint, tmp_path, prefix))  # sealed by default
    assert OrphanSweeper.start_for(make_store({"kind": "dir", "root": str(tmp_path)}), 60) is None
    try:
        key = store.for_request(bytes(32)) if hasattr(store, "for_request") else store
        await key.put("req/gone/input0", b"x")
        sweeper = OrphanSweeper.start_for(
            store, 60.0, interval_s=3600, clock=lambda: time.time() + 61
        )
        assert sweeper is not None
        for _ in range(200):
            if sweeper.swept:
                break
            await asyncio.sleep(0.05)
        assert sweeper.swept == 1 and _queues(s3_endpoint, prefix) == []
        await stop_sweeper(sweeper)
        await stop_sweeper(None)
    finally:
        await store.close()
