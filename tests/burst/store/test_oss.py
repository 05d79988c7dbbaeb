"""OSSStore through oss2 against a loopback OSS that checks the V1 signature and the wire."""

from __future__ import annotations

import pytest

from burst.store import StoreError
from burst.store.oss import OSSStore
from tests.support import STORE_CONTRACT as CONTRACT
from tests.support.oss_server import OSS_TEST_CREDENTIALS, oss_server  # noqa: F401

((ACCESS_KEY_ID, ACCESS_KEY_SECRET),) = OSS_TEST_CREDENTIALS.items()


def _store(server, **kw) -> OSSStore:
    kw.setdefault("access_key_id", ACCESS_KEY_ID)
    kw.setdefault("access_key_secret", ACCESS_KEY_SECRET)
    return OSSStore(kw.pop("bucket", "tidegate"), endpoint=server.endpoint, **kw)


@pytest.fixture
async def store(oss_server, request):
    # A prefix per test keeps tests independent on the shared session server.
    s = _store(oss_server, prefix=f"t/{request.node.name}")
    yield s
    await s.delete_prefix("")
    await s.close()


@pytest.mark.parametrize("check", CONTRACT, ids=lambda c: c.__name__)
async def test_oss_store_contract(store, check):
    await check(store)


async def test_wire_is_path_style_with_prefix_and_batch_delete(store, oss_server):
    await store.put("req-1/x", b"v")
    await store.delete(["req-1/x", "req-1/y"])
    seen = oss_server.requests[-2:]
    assert seen[0][0] == "PUT" and seen[0][1].startswith(
        "/tidegate/t%2F"
    )  # path-style for an IP endpoint
    assert seen[1][0] == "POST" and seen[1][1].startswith("/tidegate/?") and "delete" in seen[1][1]
    assert "tidegate" in oss_server.buckets and not [
        k for k in oss_server.buckets["tidegate"] if k.startswith(store.prefix)
    ]


async def test_wrong_secret_gets_403_signature_does_not_match(oss_server):
    bad = _store(oss_server, access_key_secret="not-the-secret")
    try:
        with pytest.raises(StoreError) as info:
            await bad.put("k", b"v")
    finally:
        await bad.close()
    assert not info.value.missing
    assert "403 SignatureDoesNotMatch" in str(info.value)
    cause = info.value.__cause__
    assert cause.status == 403 and cause.code == "SignatureDoesNotMatch"
    assert cause.details["StringToSign"].startswith("PUT\n")  # OSS echoes what it signed
    assert "k" not in oss_server.buckets["tidegate"]


async def test_unknown_access_key_is_rejected(oss_server):
    bad = _store(oss_server, access_key_id="LTAIunknown")
    try:
        with pytest.raises(StoreError, match="InvalidAccessKeyId"):
            await bad.get("k")
    finally:
        await bad.close()


async def test_sts_token_is_signed(oss_server):
    sts = _store(oss_server, security_token="sts-token-xyz", prefix="sts")
    try:
        await sts.put("k", b"v")
        assert await sts.get("k") == b"v"
        assert await sts.delete_prefix("") == 1
    finally:
        await sts.close()


async def test_delete_prefix_pages_past_1000_keys(oss_server):
    s = _store(oss_server, prefix="many")
    objects = oss_server.buckets["tidegate"]
    from tests.support.oss_server import _Object

    with oss_server.lock:  # seeded directly to keep the test fast
        for i in range(1203):
            objects[f"many/req/{i:05d}"] = _Object(b"", "application/octet-stream")
    try:
        assert await s.delete_prefix("req/") == 1203
        assert not [k for k in objects if k.startswith("many/")]
    finally:
        await s.close()


async def test_missing_bucket_is_an_error_not_a_missing_key(oss_server):
    s = _store(oss_server, bucket="no-such-bucket")
    try:
        with pytest.raises(StoreError) as info:
            await s.get("k")
        assert not info.value.missing and "NoSuchBucket" in str(info.value)
    finally:
        await s.close()
