"""The memory watchdog of function instances: peak memory from /proc, enforced per invocation."""

from __future__ import annotations

import asyncio
import math
import os


def status_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a live process in kB; (0, 0) once it is gone."""
    rss = hwm = 0
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith(b"VmHWM:"):
                    hwm = int(line.split()[1])
    except (OSError, ValueError):
        pass
    return rss, hwm


def peak_mb(pid: int) -> int:
    return math.ceil(status_kb(pid)[1] / 1024)


def reset_peak(pid: int) -> None:
    try:  # "5" resets VmHWM to the current RSS, so the peak is per invocation
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


# The fastest a function's memory can grow, MB/s: one thread faulting fresh pages in
# (``np.ones``) did 6.1 GB/s on this VM at load 5, reading a /dev/shm blob 1.6 GB/s
# (ops/bench/burst25hop_growth.py); ~3x that, for a quieter core or a second thread.
MAX_GROWTH_MB_PER_S = 20_000.0
# the longest the watchdog waits between two reads, however much room is left
MAX_POLL_S = 1.0
# near its memory size an instance is read every memory_poll_ms at first, then less often, up
# to this (a leg's start, where loading grows memory most, is read closely)
NEAR_POLL_S = 0.02


def next_poll_s(hwm_kb: int, memory_mb: int, floor_s: float) -> float:
    """How long the watchdog may wait before its next read: the time the process needs to
    fill what is left of its memory size at ``MAX_GROWTH_MB_PER_S``, at least ``floor_s``.
    A warm leg far below its size is read once or twice, not every 5-20 ms: each read wakes
    the runtime on a core the legs compute on (19 reads a split ResNet-50 request before)."""
    room_mb = memory_mb - hwm_kb / 1024.0
    return min(max(floor_s, room_mb / MAX_GROWTH_MB_PER_S), MAX_POLL_S)


def next_floor_s(floor_s: float, poll_s: float) -> float:
    """The least wait after one more read: from ``poll_s`` up to ``NEAR_POLL_S`` by 1.5x."""
    return max(floor_s, min(floor_s * 1.5, max(poll_s, NEAR_POLL_S)))


async def watch_memory(pid: int, memory_mb: int, poll_s: float) -> int:
    """Return the peak (after killing the process) once it exceeds ``memory_mb``; Lambda kills a
    function that goes over its memory size. Reads come ``next_poll_s`` apart: never later than
    the process could have filled its memory size, never closer than the schedule that
    starts at ``poll_s`` and slows to ``NEAR_POLL_S`` (what every instance had before)."""
    floor_s = poll_s
    while True:
        _, hwm_kb = status_kb(pid)
        if hwm_kb > memory_mb * 1024:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
            return math.ceil(hwm_kb / 1024)
        await asyncio.sleep(next_poll_s(hwm_kb, memory_mb, floor_s))
        floor_s = next_floor_s(floor_s, poll_s)
