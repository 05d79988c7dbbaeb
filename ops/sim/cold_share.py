"""Cold starts that share the host's cores (the embedded function runtime): processor sharing.

A start's work is its cold start alone (the profile's draw, ms). With n under way on C cores
each is served at rate min(1, C / n): n started together on C cores end together after about
n / C times one alone (never sooner than one alone), and a start that joins pushes back the ends
of those under way. Measured with the local runtime on the dev host (2 cores, ``delay`` model,
N fresh instances asked at once, 2 reps, load 1.7-4): one alone 1.55 s, 2 at once 1.64 s each
(1.06x), 4 at once 3.0-3.2 s (2.0x), 8 at once 5.6-6.1 s (3.7-3.9x), each group ending within
0.2 s of itself; a flash crowd's 8 starts live (spread over 0.9 s) ended 4.9-6.5 s later.

The simulator fixes a request's latency when it is served, so the requests that depend on a
start under way (the one that started it, and those that waited for its instance) are kept with
it, and ``FunctionPool`` moves them when a join pushes the start back (``pushed_back``).
"""

from __future__ import annotations

import heapq
from bisect import insort

# a start under way: [work left at ``SharedStarts.t`` (ms, alone), end (s), its dependents]
# a dependent: [request index (-1: none), end (s), its wait's entry (s) or None, billed per ms]
REMAINING, END, DEPS = 0, 1, 2
# the least share of a core the starts keep when the host's other work takes the rest (the
# scheduler still gives a runnable process time slices, so they always progress)
MIN_CORES = 0.1


class SharedStarts:
    def __init__(self, cores: float):
        self.cores = max(float(cores), MIN_CORES)
        self.t = 0.0  # when ``starts``' work left was last brought up to date
        self.starts: list[list] = []  # ascending work left (so ascending ends)

    def _rate(self, n: int) -> float:
        return min(1.0, self.cores / n)

    def advance(self, now_s: float) -> None:
        """Serve the starts under way up to ``now_s``; drop the ones that ended."""
        starts = self.starts
        if now_s <= self.t:
            return
        if starts:
            ended = 0
            while ended < len(starts) and starts[ended][END] <= now_s:
                ended += 1
            # each start under way has had the same service: by the last one's end, its work
            if ended:
                done, since = starts[ended - 1][REMAINING], starts[ended - 1][END]
            else:
                done, since = 0.0, self.t
            del starts[:ended]
            if starts:
                done += (now_s - since) * 1000.0 * self._rate(len(starts))
                for s in starts:
                    s[REMAINING] -= done
        self.t = now_s

    def under_way(self, now_s: float) -> int:
        self.advance(now_s)
        return len(self.starts)

    def join(self, now_s: float, work_ms: float) -> tuple[list, list[tuple[list, float]]]:
        """A start of ``work_ms`` begins at ``now_s``: (the start, [(start under way pushed
        back, its end before)])."""
        self.advance(now_s)
        before = [(s, s[END]) for s in self.starts]
        start: list = [max(work_ms, 0.0), now_s, []]
        insort(self.starts, start, key=lambda s: s[REMAINING])
        self._schedule(now_s)
        return start, [(s, old) for s, old in before if s[END] != old]

    def set_cores(self, now_s: float, cores: float) -> list[tuple[list, float]]:
        """From ``now_s`` the starts have ``cores`` (the host's cores less its other work, at
        least ``MIN_CORES``): [(start under way moved, its end before)]."""
        self.advance(now_s)
        cores = max(cores, MIN_CORES)
        if cores == self.cores:
            return []
        self.cores = cores
        before = [(s, s[END]) for s in self.starts]
        self._schedule(now_s)
        return [(s, old) for s, old in before if s[END] != old]

    def _schedule(self, now_s: float) -> None:
        t, done, n = now_s, 0.0, len(self.starts)
        for j, s in enumerate(self.starts):  # they end in order, each leaving more cores
            t += (s[REMAINING] - done) / 1000.0 / self._rate(n - j)
            done = s[REMAINING]
            s[END] = t

    def of_instance(self, up_s: float) -> list | None:
        """The start under way an instance up at ``up_s`` waits for (ties end together)."""
        for s in self.starts:
            if s[END] == up_s:
                return s
        return None


def pushed_back(pool, moved: list[tuple[list, float]]) -> None:
    """Move what depends on the starts in ``moved`` by as much as each was pushed back: its
    instance group's busy entry (free and up), its dependents' ends and waits, and their
    latencies and bills (``pool.late``, for the engine)."""
    new_up = {old: s[END] for s, old in moved}
    pool.busy[:] = [
        (free + (new_up[up] - up), new_up[up]) if up in new_up else (free, up)
        for free, up in pool.busy
    ]
    ends, waiting = pool.request_ends, pool.waiting
    for s, old in moved:
        delta_s = s[END] - old
        for dep in s[DEPS]:
            ends[ends.index(dep[1])] = dep[1] = dep[1] + delta_s
            if dep[2] is not None:
                waiting[waiting.index(dep[2])] = dep[2] = dep[2] + delta_s
            billed_ms = delta_s * 1000.0 * dep[3]
            pool.billed_ms += billed_ms
            if dep[0] >= 0:
                pool.late.append((dep[0], delta_s * 1000.0, billed_ms))
    heapq.heapify(pool.busy)
    heapq.heapify(ends)
    heapq.heapify(waiting)
