"""The warm function pool a burst's onset needs, learnt from past bursts, and what keeping it
warm costs where the platform keeps an idle instance for a while (Lambda, the local runtime).

A burst that finds no warm instance starts one per spilled request until the first are up: at
a sharp onset (700 req/s onto one VM) that is several hundred cold starts in its first second,
each a ~900 ms start that misses a 300 ms SLO (held-out MMPP 23/739 mh12: 1,352 cold starts,
98.81 % within the SLO). The instances a burst's spill keeps busy once warm are far fewer
(spill x warm run, ~70 there), and the platform keeps an idle one alive for its keep-alive
after its last invocation. So the pool is the most instances the spill of past bursts kept
busy over ``horizon_s``, kept alive between bursts by pings: an invocation of each idle pool
instance before its keep-alive runs out, billed as any invocation (the request fee and a warm
run's duration). At the reference prices (2 GB, 110 ms warm, a 600 s keep-alive, pinged every
480 s) an instance kept an hour costs $3e-5, the bill of one cold start it saves (900 ms), and
the misses it saves are the point. On the 16 held-out random MMPP traces: 1 -> 0 under 99 %
within the SLO, -1.0 % cost; on a new set of 16 with sharper onsets 2 -> 0, -1.3 %.
"""

from __future__ import annotations

import math
from collections import deque

from ..costs import PriceTable, billed_ms, function_cost_usd, warm_instances_cost_usd
from ..state import LiveState

# Pool instances are pinged once idle for this share of the platform's keep-alive where it is
# known (a margin for one reclaimed early), else every 4 minutes (Lambda reclaims idle instances
# after 5-15 minutes in published measurements; the local runtime after 300 s by default).
PING_SHARE = 0.8
DEFAULT_PING_S = 240.0


def ping_interval_s(keep_alive_s: float | None = None) -> float:
    """How long a pool instance may stay idle before it is pinged."""
    if keep_alive_s is None or keep_alive_s <= 0:
        return DEFAULT_PING_S
    return PING_SHARE * keep_alive_s


class BurstPool:
    """The most instances the spill kept busy over the last ``horizon_s`` (a sliding maximum of
    one sample per control tick).

    A tick's sample is the larger of what the rate above the ready VMs keeps busy (Little's
    law at the warm latency) and the instances busy when no cold start was under way: burst
    requests in flight, at most one per instance up. During a cold start those in flight count
    its latency, ~8x a warm run's; those queued behind busy instances count their wait (Azure
    code x20: 209 in flight on 105 instances the tick before 213 cold starts, a pool twice what
    it used, +1.2 % of its cost in pings); either would oversize the pool."""

    def __init__(self, horizon_s: float):
        self.horizon_s = horizon_s
        self._peaks: deque[tuple[float, float]] = deque()  # (time, need), need decreasing

    def observe(self, now_s: float, need: float) -> None:
        peaks = self._peaks
        while peaks and peaks[-1][1] <= need:
            peaks.pop()
        peaks.append((now_s, need))
        while peaks[0][0] < now_s - self.horizon_s:
            peaks.popleft()

    def size(self) -> int:
        return math.ceil(self._peaks[0][1] - 1e-9) if self._peaks else 0

    def sample(
        self, state: LiveState, vm_rate_per_s: float, latency_s: float, per_request: int
    ) -> int:
        """Record this tick's need and return the pool: the most needed over the horizon."""
        need = max(state.arrival_rate_short_per_s - vm_rate_per_s, 0.0) * latency_s
        burst = state.burst
        if burst.recent_cold_starts == 0:  # busy: requests in flight, at most one per instance up
            busy = burst.in_flight
            if burst.warm_instances is not None:
                busy = min(busy, burst.warm_instances)
            need = max(need, float(busy))
        self.observe(state.now_s, need * per_request)
        return self.size()


def ping_usd(prices: PriceTable, latency_s: float, memory_mb: int) -> float:
    """One ping of one instance: an invocation billed a warm run."""
    return function_cost_usd(prices, [(billed_ms(prices, latency_s * 1e3), memory_mb)])


def pinged_cost_usd_per_s(
    prices: PriceTable, instances: int, latency_s: float, memory_mb: int, keep_alive_s=None
) -> float:
    """Keeping ``instances`` idle instances alive by pings, per second (an upper bound: an
    instance that serves meanwhile needs none)."""
    return instances * ping_usd(prices, latency_s, memory_mb) / ping_interval_s(keep_alive_s)


def warm_cost_usd_per_s(
    prices: PriceTable, instances: int, latency_s: float, memory_mb: int, pinged: bool
) -> float:
    """What keeping ``instances`` warm costs a second: by pings, else held as provisioned
    concurrency is billed (GB-s whether or not they serve)."""
    if pinged:
        return pinged_cost_usd_per_s(prices, instances, latency_s, memory_mb)
    return warm_instances_cost_usd(prices, instances, memory_mb, 1.0)
