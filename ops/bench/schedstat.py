"""Where a benchmark's child processes spent their time: on a core, or waiting for one.

Linux's ``/proc/PID/schedstat`` gives, per process, nanoseconds run on a CPU and nanoseconds
spent runnable but waiting in a run queue. Summed over this process's descendants (the local
function runtime and its instances) before and after a row of requests, it tells a slow row that
computed more (run time up) from one that waited for cores other work held (wait time up).
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class SchedTimes:
    run_ms: float  # on a CPU
    wait_ms: float  # runnable, waiting for a CPU

    def __sub__(self, other: "SchedTimes") -> "SchedTimes":
        return SchedTimes(self.run_ms - other.run_ms, self.wait_ms - other.wait_ms)


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


def descendants(pid: int | None = None) -> list[int]:
    todo, seen = _children(pid or os.getpid()), []
    while todo:
        p = todo.pop()
        seen.append(p)
        todo += _children(p)
    return seen


def _process_times(pid: int) -> dict[int, tuple[int, int]]:
    """Per thread of ``pid``: (run ns, wait ns); a process's own schedstat counts only its
    main thread."""
    out = {}
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                run_ns, wait_ns, _ = (int(v) for v in f.read().split())
            out[int(tid)] = (run_ns, wait_ns)
    except (OSError, ValueError):
        pass
    return out


def snapshot(pid: int | None = None) -> dict[int, tuple[int, int]]:
    """(run ns, wait ns) of every thread of every descendant of ``pid`` (default: this one)."""
    out: dict[int, tuple[int, int]] = {}
    for p in descendants(pid):
        out.update(_process_times(p))
    return out


def delta(before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]]) -> SchedTimes:
    """Time used between two snapshots by threads alive at the second (new ones from zero)."""
    run = wait = 0
    for tid, (r, w) in after.items():
        r0, w0 = before.get(tid, (0, 0))
        run += r - r0
        wait += w - w0
    return SchedTimes(run / 1e6, wait / 1e6)
