"""Start-up's freed heap goes back to the system once start-up's work is done (``malloc_trim``):
a soak saw the gateway hold ~92 MB free inside its heap for a whole 15-minute soak."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util

import pytest

from gateway import memory


def _rss_kb() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def test_the_freed_heap_leaves_the_process():
    if memory.trim_heap() is None:
        pytest.skip("not glibc: there is no malloc_trim")
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    blocks = [libc.malloc(2048) for _ in range(60_000)]  # ~120 MB of small blocks
    for b in blocks:
        ctypes.memset(b, 1, 2048)  # touched: resident
    pin = libc.malloc(2048)  # above them: free() alone cannot shrink the heap's top
    for b in blocks:
        libc.free(b)
    held = _rss_kb()
    assert memory.trim_heap() is True
    assert held - _rss_kb() > 80_000  # most of the ~120 MB is back with the system
    libc.free(pin)


async def test_it_waits_for_start_up_however_it_ends(monkeypatch):
    calls = []
    monkeypatch.setattr(memory, "trim_heap", lambda: calls.append("trim") or True)
    done = asyncio.Event()

    async def prepare():
        await done.wait()
        raise RuntimeError("a plan could not be prepared")  # the trim runs even so

    startup = asyncio.get_running_loop().create_task(prepare())
    trimming = asyncio.get_running_loop().create_task(memory.trim_after(startup))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert calls == []  # start-up still under way
    done.set()
    assert await trimming is True and calls == ["trim"]
    with pytest.raises(RuntimeError):
        await startup
