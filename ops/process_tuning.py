"""Process-level tuning for servers that move large tensor buffers (gateway, model server).

glibc serves allocations over its mmap threshold with fresh mappings and trims the heap top
eagerly, so every 600 KB request body costs page faults twice per hop. Measured on the gateway
(ops/bench/gateway_overhead.py, resnet18 binary, c=1): 2.8 -> 1.9 ms of CPU per request.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8


def tune_allocator(
    mmap_threshold_bytes: int = 64 << 20,
    trim_threshold_bytes: int = 256 << 20,
    arena_max: int | None = None,
) -> bool:
    """Keep large buffers on the reusable heap. Returns False where glibc is not there.

    ``arena_max=1``: threads allocate from the main heap too. A thread's own arena gives its
    free top back only past the trim threshold, which no arena heap (64 MiB) reaches, and
    ``malloc_trim`` cannot: the gateway's JSON-decoding threads kept ~70 MB resident after a
    burst of large requests (issue mem23: RSS 348 MB after it and a trim, 296 with one arena,
    280 before it)."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        ok = libc.mallopt(M_MMAP_THRESHOLD, mmap_threshold_bytes) == 1
        if arena_max is not None:
            ok = libc.mallopt(M_ARENA_MAX, arena_max) == 1 and ok
        return libc.mallopt(M_TRIM_THRESHOLD, trim_threshold_bytes) == 1 and ok
    except (OSError, AttributeError):
        return False


def tune_gc() -> None:
    """Objects alive after start-up (modules, the app, weights) are never collected: freeze them
    so each collection walks only request-scoped objects, and collect gen 0 less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
