"""The async queue in simulated time (``gateway.asyncq``): requests of async-class tenants that
``QueueFirst`` queues, drained onto the VMs by a few consumers when the fleet has spare slots.

As the gateway does: an async tenant's request asks ``QueueFirst`` (wrapping the routing policy)
with its deadline; queued, it waits; a consumer (``consumers`` of them, one job each) takes the
oldest job while the ready replicas hold fewer than ``slots_per_replica`` rows each, or at once
when the oldest has waited ``urgent_fraction`` of the tightest deadline, and serves it on the VM
path (never functions). A job meets its SLO when answered within its deadline; its latency runs
from acceptance. Consumers look at every arrival and every tick (the gateway polls at 20 ms).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace

import numpy as np

from policies.state import QueueState


@dataclass(frozen=True)
class AsyncSetup:
    """The async SLO class as ``tidegate serve`` configures it (``[async_queue]``, tenants)."""

    deadline_s_by_tenant: dict[str, float] = field(default_factory=dict)  # async tenants only
    consumers: int = 2
    slots_per_replica: int = 2
    urgent_fraction: float = 0.5

    @classmethod
    def from_settings(cls, settings) -> "AsyncSetup":
        """Async-class tenants' deadlines and the queue's consumer settings of a serve config."""
        aq = settings.async_queue
        deadlines = {
            t.name: float(t.deadline_s or aq.default_deadline_s)
            for t in settings.tenants
            if t.slo_class == "async"
        }
        return cls(deadlines, aq.consumers, aq.slots_per_replica, aq.urgent_fraction)


class AsyncQueue:
    """Pending and running jobs (request indices); ``avail`` is the VM pool's batching time of
    each request, set here to when a consumer took the job."""

    def __init__(self, setup: AsyncSetup, arrivals: list[float], avail: list[float], lat, seed=0):
        self.s = setup
        self.rng = np.random.default_rng(seed)
        self.arr, self.avail, self.lat = arrivals, avail, lat
        self.min_deadline_s = min(setup.deadline_s_by_tenant.values(), default=float("inf"))
        self.pending: deque[int] = deque()
        self.running: list[int] = []
        self.jobs: list[int] = []  # every queued request, for the result

    @classmethod
    def for_run(cls, setup, trace, arrivals: list[float], lat):
        """(deadline per tenant index or None, the queue or None, the VM batching times)."""
        a = setup.async_setup
        deadline_of = [a.deadline_s_by_tenant.get(t) if a else None for t in trace.tenants]
        if all(d is None for d in deadline_of):
            return deadline_of, None, arrivals  # no async tenant: nothing is ever queued
        avail = list(arrivals)
        return deadline_of, cls(a, arrivals, avail, lat, setup.seed + 3), avail

    def state(self, now_s: float) -> QueueState:
        oldest = now_s - self.arr[self.pending[0]] if self.pending else 0.0
        return QueueState(len(self.pending), len(self.running), max(oldest, 0.0), self.s.consumers)

    def put(self, idx: int) -> None:
        self.pending.append(idx)
        self.jobs.append(idx)

    def drain(self, now_s: float, vm) -> None:
        """Start jobs while a consumer is free and the VMs have a spare slot or the oldest job
        is urgent; each goes through the pool as any VM request (power of two choices)."""
        if self.running:
            self.running = [i for i in self.running if not self._answered(i, now_s)]
        while self.pending and len(self.running) < self.s.consumers:
            ready = vm.ready
            spare = (
                bool(ready)
                and sum(r.outstanding(now_s) for r in ready) < len(ready) * self.s.slots_per_replica
            )
            age_s = now_s - self.arr[self.pending[0]]
            if not (spare or age_s >= self.s.urgent_fraction * self.min_deadline_s):
                return
            replica = self._pick(ready, now_s) if ready else (vm.booting or [None])[0]
            if replica is None:  # no VM at all: the job waits for one
                return
            idx = self.pending.popleft()
            self.avail[idx] = now_s
            vm.enqueue(replica, idx)
            self.running.append(idx)

    def flush(self, end_s: float, vm) -> None:
        """After the trace: the consumers serve every job left (at ``end_s``, no VM left
        idle for them to wait on; with no VM at all, never: latency infinite)."""
        consumers = self.s.consumers
        self.s = replace(self.s, consumers=1 << 30, urgent_fraction=0.0)
        self.drain(end_s, vm)
        self.s = replace(self.s, consumers=consumers)
        for idx in self.pending:
            self.lat[idx] = float("inf")

    def _pick(self, ready: list, now_s: float):
        a, b = self.rng.integers(len(ready), size=2)
        ra, rb = ready[a], ready[b]
        return ra if ra.outstanding(now_s) <= rb.outstanding(now_s) else rb

    def _answered(self, idx: int, now_s: float) -> bool:
        # a job's latency is set once its batch started (lazily): answered at its end
        return self.lat[idx] > 0.0 and self.avail[idx] + self.lat[idx] / 1000.0 <= now_s

    def finish(self) -> list[int]:
        """Every job's index once the run is over, its latency now counted from acceptance."""
        for idx in self.jobs:
            self.lat[idx] += (self.avail[idx] - self.arr[idx]) * 1000.0
        return self.jobs
