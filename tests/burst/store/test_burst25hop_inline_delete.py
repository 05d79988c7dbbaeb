"""A request's tensors on a memory-backed directory store are deleted on the event loop: the
master cleans up ``req/`` before it answers, and a thread hop there waited for a core on a busy
host. On disk the delete stays off the loop."""

import asyncio
import os

import pytest

from burst.store.local_dir import LocalDirStore


def _no_threads(monkeypatch):
    async def refuse(*args, **kwargs):
        raise AssertionError("hopped to a thread")

    monkeypatch.setattr(asyncio, "to_thread", refuse)


@pytest.mark.skipif(not os.access("/dev/shm", os.W_OK), reason="needs /dev/shm")
async def test_a_request_s_tensors_in_memory_go_without_a_thread_hop(tmp_path, monkeypatch):
    import tempfile

    root = tempfile.mkdtemp(prefix="b25hop-", dir="/dev/shm")
    store = LocalDirStore(root)
    try:
        for key in ("req/r1/s0/w1/in", "req/r1/s0/w1/a1/out", "req/r2/s0/w1/in"):
            await store.put(key, b"x" * 1000)
        _no_threads(monkeypatch)
        assert await store.delete_prefix("req/r1/") == 2
        await store.delete(["req/r2/s0/w1/in"])
        monkeypatch.undo()
        assert await store.list_prefix("req/") == []
    finally:
        await LocalDirStore(root).delete_prefix("")
        os.rmdir(root)


async def test_on_disk_the_delete_stays_off_the_loop(tmp_path, monkeypatch):
    store = LocalDirStore(tmp_path, inline_io_max_bytes=64 * 1024)
    if store.memory_backed:
        pytest.skip("tmp_path is on a tmpfs here")
    await store.put("req/r1/in", b"x")
    hops = []
    real = asyncio.to_thread

    async def counted(fn, *args):
        hops.append(fn)
        return await real(fn, *args)

    monkeypatch.setattr(asyncio, "to_thread", counted)
    assert await store.delete_prefix("req/") == 1
    assert len(hops) == 1
