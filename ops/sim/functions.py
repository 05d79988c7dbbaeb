"""The simulated function platform: warm and cold instances, keep-alive, a concurrency cap.

A burst request runs one plan: ``instances`` functions at once (the master and its workers, each
its own function so slices stay warm). Every request uses the same set of functions, so the
platform is modelled as a pool of instance *groups*: a request takes an idle group (warm) or
starts a new one (cold) while the concurrency cap allows, else waits for the first to free up
(the platform throttles and the gateway retries).

Several models (a shared fleet) share those functions, as live: the gateway registers one
master (``tidegate-master-{mb}mb``) and one set of workers for every model (``burst/service.py``)
and the runtime gives a call any idle instance of the function (``burst/faas/local_runtime.py``).
Each model keeps a pool; a group sits in the pool of the model it last ran. A request with no
idle group of its own model takes the most recently idle group of another model whose plan has
its shape (``lend_between``: the same instances and memory size), warm, plus the read of its
model's weights into each instance (``lend.weight_read_ms``, billed on every instance); the
group then belongs to its model. (The instance's weight cache may still hold the model from an
earlier turn, ``burst/weight_cache.py``; the simulation reads again on every switch.)
"""

from __future__ import annotations

import heapq
import math
import statistics
from collections import deque

from policies.autoscaling.warm_pool import ping_interval_s
from policies.routing.instance_wait import should_wait

from .cold_share import DEPS, END, MIN_CORES, SharedStarts, pushed_back
from .lend import weight_read_ms

# requests the gateway lets wait for function slots (``burst.service.BurstService``'s
# ``max_waiting``, its instance gate's bound); one more is refused at once (503, Retry-After)
GATEWAY_MAX_WAITING = 64


class FunctionPool:
    def __init__(self, profile, seed: int, run_tail_ms: float | None = None):
        self.p = profile
        self.k = max(1, profile.burst_instances)
        # the gateway holds one concurrency slot per plan worker (the master runs a leg of each
        # stage itself), so a serial plan asked at 4 workers takes 4 slots for its 1 instance
        self.cap_groups = max(1, profile.fn_concurrency // max(self.k, profile.burst_workers))
        self.keep_alive_s = profile.fn_keep_alive_s
        self.cold_ms, self.cold_billed_ms = profile.cold_samples(4096, seed + 7)
        self.cold_i = 0
        # what the gateway predicts a cold start and a warm request take (it cannot know the draw)
        self.cold_predicted_ms = statistics.median(self.cold_ms)
        self.run_tail_ms = profile.burst_p50_ms if run_tail_ms is None else run_tail_ms
        self.wait_rule = getattr(profile, "fn_wait_for_instances", True)
        self.waited = 0  # requests that waited for a started group instead of a cold start
        self.max_waiting = GATEWAY_MAX_WAITING
        self.waiting: list[float] = []  # when the requests waiting for a group start
        self.refused = 0  # requests refused with that many already waiting
        # the gateway's gate waits for a started group only once it has seen a warm answer
        # (it cannot tell a wait meets the SLO before): when the first one comes
        self.first_warm_s = math.inf
        self.samples = profile.burst_samples_ms(65536, seed).tolist()
        self.sample_i = 0
        self._share_cores(profile)
        # (request index, latency ms, billed ms) its start was pushed back by, for the engine
        self.late: list[tuple[int, float, float]] = []
        # groups serving: (when free, when up); a group started cold is up after its cold start
        self.busy: list[tuple[float, float]] = []
        # end times of every burst request not yet answered: throttled ones wait behind a busy
        # group, and the gateway counts them in flight from dispatch to answer (its autoscaler
        # sees them), so the group count alone undercounts a queue of spills
        self.request_ends: list[float] = []
        self.idle: deque[float] = deque()  # idle-since times, ascending
        self.cold_starts = 0  # instances started cold
        self.cold_requests = 0
        self.recent_cold = 0  # this tick
        self.requests = 0
        self.billed_ms = 0.0  # over all invocations
        self.throttled = 0
        self.prewarmed = 0  # groups the warm pool started
        self.pings = 0  # pool groups pinged to keep them alive
        self.warm_billed_ms, self.warm_invocations = 0.0, 0
        self.ping_s = ping_interval_s(self.keep_alive_s)
        self.cold_billed_p50_ms = statistics.median(self.cold_billed_ms)
        self.invocations = 0
        self.billed_per_p50 = profile.burst_billed_ms / max(profile.burst_p50_ms, 1e-9)
        # other models' pools whose idle groups this one may take (``lend_between``), the ms a
        # taken group reads this model's weights, and the requests served so (weight reads)
        self.lenders: list[FunctionPool] = []
        self.read_ms = weight_read_ms(profile)
        self.switches = 0

    def _share_cores(self, profile) -> None:
        """What shares the host's cores on the embedded runtime (``cold_start_contention``)."""
        # cold starts sharing the host's cores (``cold_start_contention``: ``cold_share.py``)
        self.shared = (
            SharedStarts(profile.fn_host_cores or 1) if profile.cold_start_contention else None
        )
        # what else keeps the host busy (``share_host``): cores less that are the starts' share
        self.host_cores = float(profile.fn_host_cores or 1)
        # warm invocations' CPU on those cores (``fn_warm_cpu_ms``, 0: warm runs as profiled):
        # what the host's other work leaves, and the CPU phases of warm runs under way (start
        # s, end s); the warm runs started over the last second are the cold starts' other work
        self.warm_cpu_ms = profile.fn_warm_cpu_ms if self.shared is not None else 0.0
        self.host_free = self.host_cores
        self.cpu_runs: list[tuple[float, float]] = []
        self.warm_started: deque[float] = deque()
        self.host_work = self.shared is not None and (
            profile.host_cpu_ms_per_request > 0
            or profile.host_base_cores > 0
            or profile.vm_replica_cores > 0
            or self.warm_cpu_ms > 0
        )
        self.host_seen_s = -math.inf

    def release(self, now_s: float) -> None:
        busy, idle, ends = self.busy, self.idle, self.request_ends
        while busy and busy[0][0] <= now_s:
            idle.append(heapq.heappop(busy)[0])
        while ends and ends[0] <= now_s:
            heapq.heappop(ends)
        horizon = now_s - self.keep_alive_s
        while idle and idle[0] < horizon:
            idle.popleft()

    def warm_groups(self) -> int:
        return len(self.idle) + len(self.busy)

    def keep_warm(self, instances: int, now_s: float) -> None:
        """Keep ``instances`` function instances warm as a caller can where the platform reclaims
        an instance idle for its keep-alive (the gateway's control loop, gateway/control.py):
        an idle group idle for ``ping_s`` is pinged, one warm invocation per instance; groups
        missing are started, each billed its cold start and first invocation, and serve once
        up. Both are billed apart from requests (``warm_usd``); groups past ``instances`` are
        left to the keep-alive."""
        want, idle, limit = math.ceil(instances / self.k), self.idle, now_s - self.ping_s
        due = next((i for i, t in enumerate(idle) if t >= limit), len(idle))
        for _ in range(min(due, want - (self.warm_groups() - due))):
            idle.popleft()
            self._invoke_warm(now_s, 0.0, 0.0)
            self.pings += 1
        missing = min(want, self.cap_groups) - self.warm_groups()
        for _ in range(max(missing, 0)):
            self._invoke_warm(now_s, self.cold_predicted_ms, self.cold_billed_p50_ms)
            self.prewarmed += 1

    def _invoke_warm(self, now_s: float, cold_ms: float, cold_billed_ms: float) -> None:
        up_s = now_s + cold_ms / 1000.0
        if cold_ms and self.shared is not None:
            start, moved = self.shared.join(now_s, cold_ms)
            up_s = start[1]
            pushed_back(self, moved)
        heapq.heappush(self.busy, (up_s + self.p.burst_p50_ms / 1000.0, up_s))
        self.warm_billed_ms += self.p.burst_billed_ms + cold_billed_ms
        self.warm_invocations += self.k

    def warm_usd(self, prices) -> float:
        """What keeping instances warm billed: pool starts and pings (their GB-s and fees)."""
        gb_s = self.warm_billed_ms / 1000.0 * self.p.burst_memory_mb / 1024.0
        return gb_s * prices.fn_usd_per_gb_s + self.warm_invocations * prices.fn_usd_per_request

    def share_host(self, now_s: float, other_cores: float, window_s: float = 1.0) -> None:
        """From ``now_s`` the host's other work keeps ``other_cores`` busy: the warm runs share
        the rest with the cold starts, which also leave the warm runs' CPU over the last
        ``window_s`` (what depends on the starts moves, ``late``)."""
        self.host_seen_s = now_s
        self.host_free = max(self.host_cores - other_cores, MIN_CORES)
        started = self.warm_started
        while started and started[0] < now_s - window_s:
            started.popleft()
        warm_cores = len(started) * self.warm_cpu_ms / 1000.0 / window_s
        moved = self.shared.set_cores(now_s, self.host_free - warm_cores)
        if moved:
            pushed_back(self, moved)

    def _warm_cpu_late_ms(self, now_s: float, at_s: float, run_ms: float) -> float:
        """How much longer than alone a warm run whose CPU starts at ``at_s`` takes: its CPU
        (one process, one thread: at most a core) shares what the host's other work leaves
        with the cold starts and the warm runs' CPU under way then (processor sharing, the
        rate fixed at its start)."""
        runs = self.cpu_runs = [r for r in self.cpu_runs if r[1] > now_s]
        self.warm_started.append(at_s)
        cpu_ms = min(self.warm_cpu_ms, run_ms)
        self.shared.advance(now_s)
        n = 1 + sum(s[END] > at_s for s in self.shared.starts)
        n += sum(start <= at_s < end for start, end in runs)
        stretch_ms = cpu_ms / min(1.0, self.host_free / n) - cpu_ms
        runs.append((at_s, at_s + (cpu_ms + stretch_ms) / 1000.0))
        return stretch_ms

    def _contention(self, now_s: float) -> float:
        """How many times longer the gateway predicts a cold start starting now takes: k + 1
        with k under way when cold starts share the host's cores (its rule,
        gateway/cold_start.py), else 1."""
        if self.shared is None:
            return 1.0
        return float(self.shared.under_way(now_s) + 1)

    def _waits(self, now_s: float, slo_ms: float | None) -> bool:
        """No idle group: wait for the first busy one (the burst service's rule)?"""
        busy = self.busy
        can_start = len(busy) < self.cap_groups
        blind = not self.wait_rule or slo_ms is None or now_s < self.first_warm_s
        if not busy or (can_start and blind):
            return not can_start
        free_s, up_s = busy[0]
        return should_wait(
            (free_s - now_s) * 1000.0,
            cold_ms=self.cold_predicted_ms * self._contention(now_s),
            run_ms=self.run_tail_ms,
            slo_ms=slo_ms,
            can_start=can_start,
            starting=up_s > now_s,
        )

    def _queue_full(self, now_s: float) -> bool:
        """As many requests wait for a group as the gateway's gate lets wait."""
        waiting = self.waiting
        while waiting and waiting[0] <= now_s:
            heapq.heappop(waiting)
        return len(waiting) >= self.max_waiting

    def serve(
        self, now_s: float, slo_ms: float | None = None, i: int = -1
    ) -> tuple[float, float, bool] | None:
        """Run burst request ``i`` arriving at ``now_s`` with ``slo_ms`` left of its SLO (None:
        it never waits for a started group, as the gateway without one): (latency_ms,
        billed_ms, cold), pushed back later by shared cold starts (``late``); None when it
        would wait behind ``max_waiting`` others (refused)."""
        # shares: its answer moves with a start under way (shared cold starts only)
        start_s, cold, up_s, warm, shares = now_s, False, 0.0, False, False
        read_ms = 0.0
        if self.idle:
            self.idle.pop()  # the most recently used group is the warmest
            warm = True
        elif self.lenders and self._borrow(now_s):
            warm, read_ms = True, self.read_ms
        elif self._waits(now_s, slo_ms):
            # every slot in use: the gateway's slot gate queues it, at most max_waiting deep
            # (a wait for a started instance while slots are free is not bounded)
            full = len(self.busy) >= self.cap_groups
            if full and self._queue_full(now_s):
                self.refused += 1
                return None
            if full:
                self.throttled += 1  # the platform would throttle a new one
            else:
                self.waited += 1
            free_s, up_s = heapq.heappop(self.busy)  # waits for a group to free up
            start_s = max(free_s, now_s)
            waited_s = start_s if full and start_s > now_s else None
            if waited_s is not None:
                heapq.heappush(self.waiting, start_s)
            shares, per_ms = up_s > now_s and self.shared is not None, 0.0
        else:
            cold = True
        self.sample_i = (self.sample_i + 1) & 65535
        run_ms = self.samples[self.sample_i]
        if self.warm_cpu_ms and not cold:  # its CPU shares the host's cores
            run_ms += self._warm_cpu_late_ms(now_s, start_s, run_ms)
        billed = run_ms * self.billed_per_p50 + read_ms * self.k
        latency_ms = (start_s - now_s) * 1000.0 + run_ms + read_ms
        if cold:
            up_s, cold_ms, cold_billed, per_ms = self._cold_start(now_s)
            latency_ms, billed = latency_ms + cold_ms, billed + cold_billed
            shares, waited_s = per_ms is not None and up_s > now_s, None
        end_s = now_s + latency_ms / 1000.0
        if warm and end_s < self.first_warm_s:
            self.first_warm_s = end_s
        if shares:
            self._depend(up_s, i, end_s, waited_s, per_ms)
        heapq.heappush(self.busy, (end_s, up_s))
        heapq.heappush(self.request_ends, end_s)
        self.requests += 1
        self.invocations += self.k
        self.billed_ms += billed
        return latency_ms, billed, cold

    def _borrow(self, now_s: float) -> bool:
        """Take another model's most recently idle group (``lenders``), if any is idle."""
        best = None
        for pool in self.lenders:
            pool.release(now_s)  # (its groups free by now, and none past the keep-alive)
            if pool.idle and (best is None or pool.idle[-1] > best.idle[-1]):
                best = pool
        if best is None:
            return False
        best.idle.pop()
        self.switches += 1
        return True

    def _cold_start(self, now_s: float) -> tuple[float, float, float, float | None]:
        """A group started cold at ``now_s``: (when up, ms beyond a warm run, billed ms, billed
        per ms it takes (None: independent starts)). Shared, it joins the starts under way,
        and those it pushes back move what depends on them."""
        self.cold_i = c = (self.cold_i + 1) & 4095
        self.cold_starts += self.k
        self.cold_requests += 1
        self.recent_cold += self.k
        if self.shared is None:
            return now_s + self.cold_ms[c] / 1000.0, self.cold_ms[c], self.cold_billed_ms[c], None
        start, moved = self.shared.join(now_s, self.cold_ms[c])
        pushed_back(self, moved)
        up_s = start[1]
        per_ms = self.cold_billed_ms[c] / max(self.cold_ms[c], 1e-9)  # billed as it runs
        return up_s, (up_s - now_s) * 1000.0, per_ms * (up_s - now_s) * 1000.0, per_ms

    def _depend(self, up_s, i, end_s, waited_s, billed_per_ms) -> None:
        start = self.shared.of_instance(up_s)
        if start is not None:
            start[DEPS].append([i, end_s, waited_s, billed_per_ms])


def lend_between(pools: list[FunctionPool]) -> None:
    """The models' pools on one function platform lend each other idle groups where their
    plans run the same functions: as many instances, of the same memory size."""
    for pool in pools:
        pool.lenders = [
            other
            for other in pools
            if other is not pool
            and other.k == pool.k
            and other.p.burst_memory_mb == pool.p.burst_memory_mb
        ]
