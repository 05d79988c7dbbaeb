"""Whether a spilled request waits for a function instance that is already started (serving,
or still starting cold) instead of starting one of its own.

A function platform starts a fresh instance for every invocation that finds none idle (Lambda,
and the local runtime). At a burst onset that is one cold start per spilled request: the
simulator counted ~280 instances started in the first second of an MMPP burst where ~30 serve
the burst once warm, and those cold starts were 7.5 % of the hour's cost. The caller can do
better, because it knows when the instances it already has will be free: a request that
waits for one of them, rather than starting its own, is answered no later than a cold start
would answer it, and bills no cold start. The gateway's burst service and the simulator's
function pool both decide by ``should_wait`` (with ``next_free_s`` for the wait), so the
simulated fleet starts the instances the live one does.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

# A request that misses its SLO either way waits for an instance still starting when it is free
# within this share W of a cold start C. At an onset of rate r, every spill of the first
# C - W + run starts its own instance (a wait there is longer than W), about r x (C - W + run)
# instances, and about r x W requests queue on them; once they are up, that queue drains in
# ~run x W / (C - W). At one half it drains within one warm run, so the onset's misses are its
# cold starts' and no more; a share near 1 leaves too few instances and a queue that outlasts
# the onset. (MMPP, reference profile: 0.5: 626 cold starts, 99.43 %; 0.7: 531, 99.40 %.)
ONSET_WAIT_SHARE = 0.5


def next_free(
    busy: Iterable[tuple[float, float]], waiting: int, run_s: float
) -> tuple[float, float] | None:
    """The earliest started instance that no waiting request has claimed: (when it is free,
    when it is up). ``busy``: (predicted free, up) of each started instance (group; up is
    in the past for a warm one); ``waiting`` requests queued before this one each take the
    first to be free and hold it for ``run_s``. None without any started instance."""
    heap = list(busy)
    if not heap:
        return None
    heapq.heapify(heap)
    for _ in range(max(waiting, 0)):
        free_s, up_s = heap[0]
        heapq.heapreplace(heap, (free_s + run_s, up_s))
    return heap[0]


def should_wait(
    wait_ms: float | None,
    *,
    cold_ms: float,
    run_ms: float,
    slo_ms: float,
    can_start: bool = True,
    starting: bool = True,
) -> bool:
    """Wait ``wait_ms`` for the first started instance to be free (True) or start one cold
    now (False).

    ``cold_ms``: the cold start predicted for a new instance (beyond a warm request);
    ``run_ms``: the warm request's latency at the SLO's percentile; ``slo_ms``: the request's
    budget; ``starting``: that instance is still starting cold (a burst onset).
    - It waits when waiting meets the SLO and the instance is free before a new one would be up
      (answered no later, no cold start billed).
    - When a cold start would miss the SLO anyway and the instance is still starting, it waits
      if that is within ``ONSET_WAIT_SHARE`` of a cold start: at a burst onset this starts
      about the instances the rate needs instead of one per request.
    - Otherwise it starts one: a request that would miss the SLO behind warm instances busy
      with others starts the capacity the next requests need (waiting there as well kept
      MMPP's fleet one instance short of its rate: 98.6 % within the SLO).
    Past the concurrency cap (``can_start`` False) it waits whatever the wait: the platform
    would throttle a new one."""
    if wait_ms is None:
        return False
    if not can_start:
        return True
    wait_ms = max(wait_ms, 0.0)
    if wait_ms >= cold_ms:
        return False
    if wait_ms + run_ms <= slo_ms:
        return True
    if cold_ms + run_ms <= slo_ms or not starting:
        return False
    return wait_ms <= ONSET_WAIT_SHARE * cold_ms
