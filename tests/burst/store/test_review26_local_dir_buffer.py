"""``LocalDirStore.get_buffer`` refuses what ``get`` refuses, in the same words, on disk and on a
memory-backed root (where it maps the file): a prefix is not an object, a missing key is
missing."""

import os
import shutil
import tempfile

import pytest

from burst.store.base import StoreError
from burst.store.local_dir import LocalDirStore


@pytest.fixture(params=["disk", "memory"])
def store(request, tmp_path):
    if request.param == "disk":
        yield LocalDirStore(tmp_path)
        return
    if not os.access("/dev/shm", os.W_OK):
        pytest.skip("needs /dev/shm")
    root = tempfile.mkdtemp(prefix="review26-", dir="/dev/shm")
    try:
        store = LocalDirStore(root)
        assert store.memory_backed
        yield store
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("read", ["get", "get_buffer"])
async def test_a_prefix_is_not_an_object_however_it_is_read(store, read):
    await store.put("req/a/b", b"x" * 100)
    with pytest.raises(StoreError) as info:
        await getattr(store, read)("req/a")
    assert info.value.missing and "it is a prefix" in str(info.value)
    with pytest.raises(StoreError) as info:
        await getattr(store, read)("req/nope")
    assert info.value.missing
    assert bytes(await getattr(store, read)("req/a/b")) == b"x" * 100
