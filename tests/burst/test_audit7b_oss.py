"""An OSS burst store as configured by default (tensors sealed per request, ``encrypt`` on for
oss): every burst request failed in the master with "AttributeError: 'bytearray' object has no
attribute 'read'" (the sealed bytes are a bytearray; oss2 takes anything not bytes for a file).
Issue 7's audit, s13."""

from __future__ import annotations

import pytest

from burst.store.encrypted import EncryptedStore, new_request_key
from burst.store.factory import make_store
from tests.support.oss_server import OSS_TEST_CREDENTIALS, oss_server  # noqa: F401

((KEY_ID, SECRET),) = OSS_TEST_CREDENTIALS.items()


@pytest.mark.parametrize("data", [b"abc" * 1000, bytearray(b"xyz" * 1000), memoryview(b"m" * 10)])
async def test_oss_store_takes_any_bytes_like_and_sealed_tensors(oss_server, data):  # noqa: F811
    cfg = {
        "kind": "oss",
        "bucket": "tidegate",
        "endpoint": oss_server.endpoint,
        "access_key_id": KEY_ID,
        "access_key_secret": SECRET,
        "prefix": "a7b",
    }
    store = make_store(cfg)
    assert isinstance(store, EncryptedStore)  # the default for oss
    sealed = store.for_request(new_request_key())
    try:
        await sealed.put("req/r1/x", data)
        assert await sealed.get("req/r1/x") == bytes(data)
        await store.inner.put("plain", data)
        assert await store.inner.get("plain") == bytes(data)
    finally:
        await store.delete_prefix("")
        await store.close()
