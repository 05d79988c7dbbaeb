"""Async payloads at rest: sealed per request (AES-GCM), claim-checked through the object store
past the inline limit, tampering a clear error, the key never beside the data."""

from __future__ import annotations

import pytest

from burst.store.encrypted import encode_key
from burst.store.memory import MemoryStore
from gateway.asyncq.payload import Part, PayloadCodec, PayloadError, parse

SECRET_TENSOR = b"tensor bytes no one outside may read " * 8


async def test_small_payloads_travel_inline_sealed_under_their_own_key():
    store = MemoryStore()
    codec = PayloadCodec(store, inline_limit_bytes=1024, encrypt=True)
    key = codec.new_key()
    blob = await codec.pack("job1", Part.REQUEST, SECRET_TENSOR, key)
    assert SECRET_TENSOR[:16] not in blob and store._objects == {}
    assert parse(blob).key == key and codec.new_key() != key  # one key per request
    assert await codec.unpack("job1", Part.REQUEST, blob) == SECRET_TENSOR
    # a sealed payload moved to another job, or to the answer's place, does not open
    with pytest.raises(PayloadError, match="integrity"):
        await codec.unpack("job2", Part.REQUEST, blob)
    with pytest.raises(PayloadError, match="integrity"):
        await codec.unpack("job1", Part.RESULT, blob)


async def test_large_payloads_go_through_the_store_as_ciphertext_without_the_key():
    store = MemoryStore()
    codec = PayloadCodec(store, inline_limit_bytes=64, encrypt=True)
    key = codec.new_key()
    blob = await codec.pack("job1", Part.REQUEST, SECRET_TENSOR, key)
    env = parse(blob)
    assert env.ref.startswith("async/job1/request") and env.inline == b""
    assert len(blob) < 300  # a pointer and a key, not the tensor
    (stored,) = store._objects.values()
    assert SECRET_TENSOR[:16] not in stored
    assert key not in stored and encode_key(key).encode() not in stored
    assert await codec.unpack("job1", Part.REQUEST, blob) == SECRET_TENSOR
    await codec.discard(blob)
    assert store._objects == {}


@pytest.mark.parametrize("where", ["inline", "store"])
async def test_a_tampered_payload_fails_with_a_clear_error(where):
    store = MemoryStore()
    codec = PayloadCodec(store, inline_limit_bytes=1024 if where == "inline" else 0, encrypt=True)
    blob = bytearray(await codec.pack("job1", Part.RESULT, SECRET_TENSOR, codec.new_key()))
    if where == "inline":
        blob[-20] ^= 1
    else:
        (ref,) = store._objects
        obj = bytearray(store._objects[ref])
        obj[40] ^= 1
        store._objects[ref] = bytes(obj)
    with pytest.raises(PayloadError, match="failed its integrity check") as err:
        await codec.unpack("job1", Part.RESULT, bytes(blob))
    assert err.value.status == 500


async def test_a_missing_object_or_a_corrupt_envelope_is_a_clear_error():
    store = MemoryStore()
    codec = PayloadCodec(store, inline_limit_bytes=0, encrypt=True)
    blob = await codec.pack("job1", Part.REQUEST, SECRET_TENSOR, codec.new_key())
    with pytest.raises(PayloadError, match="corrupt"):
        await codec.unpack("job1", Part.REQUEST, blob[:12])
    await codec.discard_job("job1")
    with pytest.raises(PayloadError, match="no such key"):
        await codec.unpack("job1", Part.REQUEST, blob)


async def test_plain_bodies_and_unencrypted_mode_pass_through():
    codec = PayloadCodec(MemoryStore(), inline_limit_bytes=1024, encrypt=False)
    assert codec.new_key() is None
    blob = await codec.pack("job1", Part.REQUEST, SECRET_TENSOR, None)
    assert await codec.unpack("job1", Part.REQUEST, blob) == SECRET_TENSOR
    plain = b'{"inputs": []}'  # what a producer that does not seal may send
    assert await codec.unpack("job1", Part.REQUEST, plain) == plain
