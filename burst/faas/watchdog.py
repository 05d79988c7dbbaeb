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


async def watch_memory(pid: int, memory_mb: int, poll_s: float, max_poll_s: float = 0.0) -> int:
    """Return the peak (after killing the process) once it exceeds ``memory_mb``; Lambda kills a
    function that goes over its memory size. The interval grows from ``poll_s`` to
    ``max_poll_s``: memory grows most at an invocation's start (loading), and every poll wakes
    this process on cores the function instances compute on."""
    while True:
        _, hwm_kb = status_kb(pid)
        if hwm_kb > memory_mb * 1024:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
            return math.ceil(hwm_kb / 1024)
        await asyncio.sleep(poll_s)
        poll_s = max(poll_s, min(poll_s * 1.5, max_poll_s))
