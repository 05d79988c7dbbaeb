"""SqsStore against a real SQS-compatible server on loopback (moto's threaded server): messages
inline up to the size limit, a claim check past it, one queue per request and stage leg,
queues gone after the request, and tensors sealed by default."""

from __future__ import annotations

import asyncio
import os
import uuid

import boto3
import pytest

from burst.store import StoreError, make_store
from burst.store.encrypted import EncryptedStore, TamperedObject, encode_key, new_request_key
from burst.store.local_dir import LocalDirStore
from burst.store.sqs import SqsStore
from burst.store.sqs_names import queue_name, queue_name_prefix
from tests.support import check_invalid_keys, check_small_round_trip
from tests.support.s3_server import S3_TEST_CREDENTIALS, S3_TEST_REGION, s3_endpoint  # noqa: F401


@pytest.fixture
def queue_prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}-"  # one namespace per test: the moto server is shared


def _cfg(endpoint, root, queue_prefix, **kw) -> dict:
    return {
        "kind": "sqs",
        "endpoint_url": endpoint,
        "region": S3_TEST_REGION,
        "queue_prefix": queue_prefix,
        "backing": {"kind": "dir", "root": str(root)},
        "missing_after_s": 0.2,
        **S3_TEST_CREDENTIALS,
        **kw,
    }


@pytest.fixture
async def store(s3_endpoint, tmp_path, queue_prefix):  # noqa: F811
    s = make_store(_cfg(s3_endpoint, tmp_path / "backing", queue_prefix, encrypt=False))
    yield s
    await s.close()


def _queues(endpoint: str, prefix: str) -> list[str]:
    client = boto3.client(
        "sqs", endpoint_url=endpoint, region_name=S3_TEST_REGION, **S3_TEST_CREDENTIALS
    )
    return sorted(
        u.rsplit("/", 1)[1] for u in client.list_queues(QueueNamePrefix=prefix).get("QueueUrls", [])
    )


def _raw_messages(endpoint: str, name: str) -> list[dict]:
    client = boto3.client(
        "sqs", endpoint_url=endpoint, region_name=S3_TEST_REGION, **S3_TEST_CREDENTIALS
    )
    url = client.get_queue_url(QueueName=name)["QueueUrl"]
    resp = client.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0, MessageAttributeNames=["All"]
    )
    return resp.get("Messages", [])


def test_queue_names_group_a_request_by_stage_leg_and_never_mix_requests():
    leg_in = queue_name("tg-", "req/r1/s2/w3/in")
    assert leg_in == queue_name("tg-", "req/r1/s2/w3/a2/out") == "tg-req_r1_s2_w3_"
    assert queue_name("tg-", "req/r1/input0") == "tg-req_r1_"
    assert queue_name("tg-", "resp/r1/output0") == "tg-resp_r1_"
    assert queue_name("tg-", "req/r10/s2/w3/in") != leg_in
    # a request's prefix names its queues and no other request's ("r1" is a prefix of "r10")
    assert leg_in.startswith(queue_name_prefix("tg-", "req/r1/"))
    assert not queue_name("tg-", "req/r10/input0").startswith(queue_name_prefix("tg-", "req/r1/"))
    odd = queue_name("tg-", "req/" + "x" * 200 + "/s1/w1/in")  # long ids are digested
    assert len(odd) <= 80 and odd.startswith(queue_name_prefix("tg-", "req/" + "x" * 200 + "/"))


async def test_small_tensors_travel_in_the_message_large_ones_by_claim_check(
    store,
    s3_endpoint,
    tmp_path,
    queue_prefix,  # noqa: F811
):
    small, large = os.urandom(200 * 1024), os.urandom(300 * 1024)  # around the 256 KiB limit
    await store.put("req/r1/s1/w1/in", small)
    await store.put("req/r1/s1/w1/a1/out", large)
    assert await store.get("req/r1/s1/w1/in") == small
    assert await store.get("req/r1/s1/w1/a1/out") == large
    by_key = {
        m["Body"]: m["MessageAttributes"]
        for m in _raw_messages(s3_endpoint, queue_name(queue_prefix, "req/r1/s1/w1/in"))
    }
    assert by_key["req/r1/s1/w1/in"]["data"]["BinaryValue"] == small
    assert "data" not in by_key["req/r1/s1/w1/a1/out"]  # only a pointer in the queue
    assert (tmp_path / "backing/req/r1/s1/w1/a1/out").read_bytes() == large
    assert not (tmp_path / "backing/req/r1/s1/w1/in").exists()


async def test_a_hedged_second_reader_sees_the_same_input(store):
    await store.put("req/r2/s1/w1/in", b"x" * 1000)
    first, second = await asyncio.gather(store.get("req/r2/s1/w1/in"), store.get("req/r2/s1/w1/in"))
    assert first == second == b"x" * 1000
    assert await store.get("req/r2/s1/w1/in") == b"x" * 1000  # still there for a late hedge


async def test_concurrent_requests_read_only_their_own_tensors_and_cleanup_removes_theirs(
    store,
    s3_endpoint,
    tmp_path,
    queue_prefix,  # noqa: F811
):
    for r in ("ra", "rb"):
        await store.put(f"req/{r}/input0", r.encode() * 10)
        await store.put(f"req/{r}/s1/w1/in", r.encode() * 10)
        await store.put(f"req/{r}/s1/w1/a1/out", os.urandom(400 * 1024))
        await store.put(f"resp/{r}/output0", r.encode())
    assert await store.get("req/ra/input0") == b"ra" * 10
    assert await store.get("req/rb/s1/w1/in") == b"rb" * 10
    await store.delete_prefix("req/ra/")
    await store.delete_prefix("resp/ra/")
    assert _queues(s3_endpoint, queue_prefix) == sorted(
        [f"{queue_prefix}req_rb_", f"{queue_prefix}req_rb_s1_w1_", f"{queue_prefix}resp_rb_"]
    )
    assert not (tmp_path / "backing/req/ra").exists()  # the claim-check object went too
    with pytest.raises(StoreError) as info:
        await store.get("req/ra/input0")
    assert info.value.missing
    assert await store.get("resp/rb/output0") == b"rb"


async def test_missing_keys_and_deleted_messages_are_missing(store):
    with pytest.raises(StoreError) as info:
        await store.get("req/none/s1/w1/in")  # no such queue
    assert info.value.missing
    await store.put("req/r3/s1/w1/in", b"a")
    await store.put("req/r3/s1/w1/a1/out", b"b")
    await store.delete(["req/r3/s1/w1/in", "req/r3/s1/w1/nothing"])
    with pytest.raises(StoreError) as info:
        await store.get("req/r3/s1/w1/in")  # queue there, message gone
    assert info.value.missing
    assert await store.get("req/r3/s1/w1/a1/out") == b"b"


async def test_plan_data_and_other_keys_live_in_the_backing_store(store, tmp_path):
    await check_small_round_trip(store)
    await check_invalid_keys(store)
    await store.put("plans/p1/graph.json", b"{}")
    assert (tmp_path / "backing/plans/p1/graph.json").read_bytes() == b"{}"


async def test_sealed_by_default_key_never_in_the_queue_and_tampering_fails(
    s3_endpoint,
    tmp_path,
    queue_prefix,  # noqa: F811
):
    base = make_store(_cfg(s3_endpoint, tmp_path / "backing", queue_prefix))
    assert isinstance(base, EncryptedStore) and isinstance(base.inner, SqsStore)
    key = new_request_key()
    store = base.for_request(key)
    plain_small, plain_large = b"activation " * 100, b"big activation " * 30_000
    try:
        await store.put("req/r4/s1/w1/in", plain_small)
        await store.put("req/r4/s1/w1/a1/out", plain_large)
        raw = _raw_messages(s3_endpoint, queue_name(queue_prefix, "req/r4/s1/w1/in"))
        blobs = [repr(m).encode() for m in raw]
        blobs += [(tmp_path / "backing/req/r4/s1/w1/a1/out").read_bytes()]
        for blob in blobs:
            assert b"activation " not in blob  # ciphertext only
            assert key not in blob and encode_key(key).encode() not in blob
        assert await store.get("req/r4/s1/w1/in") == plain_small
        with pytest.raises(StoreError):
            await base.get("req/r4/s1/w1/in")  # without the request's key: refused
        other = base.for_request(new_request_key())
        with pytest.raises(TamperedObject):
            await other.get("req/r4/s1/w1/in")
        path = tmp_path / "backing/req/r4/s1/w1/a1/out"
        data = bytearray(path.read_bytes())
        data[100] ^= 1
        path.write_bytes(bytes(data))
        with pytest.raises(TamperedObject, match="integrity"):
            await store.get("req/r4/s1/w1/a1/out")
    finally:
        await store.delete_prefix("req/r4/")
        await base.close()


def test_settings_take_an_sqs_store_and_refuse_a_bad_one(tmp_path):
    from pydantic import ValidationError

    from gateway.settings import Settings

    s = Settings.load(
        None,
        data_dir=tmp_path,
        burst={"store": {"kind": "sqs", "backing": {"kind": "dir"}, "max_message_bytes": 65536}},
    )
    cfg = s.burst.store.as_config()
    assert cfg["kind"] == "sqs" and cfg["backing"] == {"kind": "dir"}
    for bad in ({"queue_prefix": "no spaces"}, {"max_message_bytes": 10}, {"bucket": "x"}):
        with pytest.raises((ValidationError, ValueError)):
            Settings.load(None, data_dir=tmp_path, burst={"store": {"kind": "sqs", **bad}})


def test_a_dir_backing_defaults_to_the_data_directory(tmp_path):
    from burst.store.factory import with_default_roots

    cfg = with_default_roots({"kind": "sqs", "backing": {"kind": "dir"}}, tmp_path / "objects")
    assert cfg["backing"]["root"] == str((tmp_path / "objects").resolve())
    assert isinstance(make_store({**cfg, "encrypt": False}).backing, LocalDirStore)


async def test_a_late_straggler_after_cleanup_fails_and_leaves_no_queue(
    store,
    s3_endpoint,  # noqa: F811
    tmp_path,
    queue_prefix,
):
    worker = make_store(_cfg(s3_endpoint, tmp_path / "backing", queue_prefix, encrypt=False))
    try:
        await store.put("req/r5/s1/w1/in", b"in")  # the master
        assert await worker.get("req/r5/s1/w1/in") == b"in"  # a worker instance, stuck after
        await store.delete_prefix("req/r5/")  # the request ends without it
        with pytest.raises(StoreError, match="gone"):
            await worker.put("req/r5/s1/w1/a1/out", b"late")
        assert _queues(s3_endpoint, queue_prefix) == []
    finally:
        await worker.close()
