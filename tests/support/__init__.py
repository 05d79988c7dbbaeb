"""Shared test support: loopback servers (S3, OSS, FC) and the ObjectStore contract.

The contract checks below are what every store must do the same way; each store's test file
runs them against its own backend.
"""

from __future__ import annotations

import asyncio
import os

import pytest

from burst.store.base import ObjectStore, StoreError

LARGE_OBJECT_BYTES = 20 * 1024 * 1024

BAD_KEYS = ["", "/abs/key", "a/../b", "..", "a//b", "a/./b", "trailing/", "back\\slash"]


async def check_small_round_trip(store: ObjectStore) -> None:
    await store.put("req-1/in/x.bin", b"\x00\x01tensor bytes")
    assert await store.get("req-1/in/x.bin") == b"\x00\x01tensor bytes"
    await store.put("req-1/in/x.bin", b"second")  # overwrite wins
    assert await store.get("req-1/in/x.bin") == b"second"
    await store.put("req-1/empty", b"")
    assert await store.get("req-1/empty") == b""
    await store.put("req-1/odd name+%&=.bin", b"odd")  # keys are opaque strings
    assert await store.get("req-1/odd name+%&=.bin") == b"odd"


async def check_large_round_trip(store: ObjectStore) -> None:
    blob = os.urandom(LARGE_OBJECT_BYTES)
    await store.put("req-big/activation", blob)
    assert await store.get("req-big/activation") == blob


async def check_missing_key(store: ObjectStore) -> None:
    with pytest.raises(StoreError) as info:
        await store.get("req-none/never-written")
    assert info.value.missing


async def check_delete(store: ObjectStore) -> None:
    await store.put("req-del/a", b"a")
    await store.put("req-del/b", b"b")
    await store.delete(["req-del/a", "req-del/not-there"])  # missing keys are ignored
    with pytest.raises(StoreError) as info:
        await store.get("req-del/a")
    assert info.value.missing
    assert await store.get("req-del/b") == b"b"
    await store.delete([])


async def check_delete_prefix(store: ObjectStore) -> None:
    for i in range(5):
        await store.put(f"req-p/w{i}/out", b"%d" % i)
    await store.put("req-p2/keep", b"other request")
    assert await store.delete_prefix("req-p/") == 5
    for i in range(5):
        with pytest.raises(StoreError):
            await store.get(f"req-p/w{i}/out")
    assert await store.get("req-p2/keep") == b"other request"
    assert await store.delete_prefix("req-p/") == 0


async def check_invalid_keys(store: ObjectStore) -> None:
    for bad in BAD_KEYS:
        with pytest.raises(ValueError):
            await store.put(bad, b"x")
        with pytest.raises(ValueError):
            await store.get(bad)
    with pytest.raises(ValueError):
        await store.delete(["ok", "../escape"])
    with pytest.raises(ValueError):
        await store.delete_prefix("../")


async def check_concurrent_puts(store: ObjectStore, n: int = 48) -> None:
    payloads = {f"req-c/w{i}": os.urandom(4096 + i) for i in range(n)}
    await asyncio.gather(*(store.put(k, v) for k, v in payloads.items()))
    got = await asyncio.gather(*(store.get(k) for k in payloads))
    assert got == list(payloads.values())
    # Many writers of one key: the reader sees one whole value, never a mix.
    versions = [bytes([i]) * 65536 for i in range(8)]
    await asyncio.gather(*(store.put("req-c/shared", v) for v in versions))
    assert await store.get("req-c/shared") in versions
    assert await store.delete_prefix("req-c/") == n + 1


# Every ObjectStore passes these (parametrize a store test over them).
STORE_CONTRACT = [
    check_small_round_trip,
    check_large_round_trip,
    check_missing_key,
    check_delete,
    check_delete_prefix,
    check_invalid_keys,
    check_concurrent_puts,
]
