"""Give the heap that start-up freed back to the system (glibc's ``malloc_trim``).

Start-up allocates far more than serving does: models' graphs read, the burst path's default
plans cut and their weight slices written, the cold-start probe. Once that is freed, glibc keeps
the pages in its arenas, where serving reuses only a part of them: a soak
(``ops/bench/soak.py --probe``, session 19) saw the gateway hold ~92 MB free inside its heap
for the whole of a 15-minute single-kind soak (RSS ~484 MB against ~401 MB once returned), and
one ``malloc_trim(0)`` after start-up gave 142.7 MB back at once. Later trims freed 0-6 MB
each and did not change the slow growth after it (SQLite's capped page caches), so this runs
once, when start-up's work (the plans' preparation) is done, not on a timer.
"""

from __future__ import annotations

import asyncio
import logging

from vmpool.heap import trim_heap

log = logging.getLogger("tidegate.memory")
__all__ = ["trim_after", "trim_heap"]


def _rss_mb() -> float | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096 / 1e6
    except (OSError, ValueError, IndexError):
        return None


async def trim_after(startup: asyncio.Task | None) -> bool | None:
    """Once ``startup`` (the plans' preparation) has ended, however it ended, trim the heap on a
    thread (it walks every arena) and log what went back."""
    if startup is not None:
        await asyncio.wait([startup])
    before = _rss_mb()
    released = await asyncio.to_thread(trim_heap)
    after = _rss_mb()
    if released and before is not None and after is not None:
        log.info(
            "start-up done: %.0f MB of freed heap given back (RSS %.0f MB)", before - after, after
        )
    return released
