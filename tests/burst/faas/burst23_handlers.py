"""A handler for the no-room test (burst23): a warm instance that holds memory from earlier
work, asked to load weights that no longer fit beside it."""

from __future__ import annotations

import os

_SERVED: list[int] = []
_HELD: list[bytearray] = []
_CACHE: list = []


def load(event, context):
    """Make room for ``load_mb`` MB of weights in this instance's weight cache. Warm (it has
    answered before), it first holds memory until ``load_mb`` no longer fits its memory size,
    as heap kept from earlier plans would."""
    from burst.weight_cache import LruCache, function_memory_bytes, resident_bytes

    memory = function_memory_bytes()
    assert memory is not None  # in a function: its memory size is in its environment
    if _SERVED:
        spare = memory - resident_bytes() - (event["load_mb"] << 20) // 2
        _HELD.append(bytearray(b"x") * max(0, spare))
    _SERVED.append(1)
    if not _CACHE:  # one per process, as the burst runtime keeps it
        _CACHE.append(LruCache(1 << 40))
    _CACHE[0].make_room(event["load_mb"] << 20, "plan p master")
    weights = bytearray(b"w") * (event["load_mb"] << 20)  # the load, written to
    return {"pid": os.getpid(), "rss_mb": resident_bytes() >> 20, "loaded": len(weights)}
