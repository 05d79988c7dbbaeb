"""The simulated VM pool: replicas that boot, batch dynamically, drain and are billed.

Batching is the model server's (``vmpool.batching``): a replica that is free takes up to
``max_batch`` queued rows. The server waits up to ``max_queue_delay`` for a fuller batch only
while it holds requests that are not yet queued (nothing else could join); here a request is
queued the moment it is routed, so a free replica starts at once with the rows that have arrived.
Replicas are advanced lazily: a batch is formed only once the simulation has seen every arrival
up to its start, so the result is exact without an event per request.
"""

from __future__ import annotations

import math
from collections import deque

INF = math.inf


class Replica:
    __slots__ = (
        "rid",
        "launch_s",
        "ready_s",
        "free_s",
        "in_service",
        "queue",
        "draining",
        "stop_s",
        "busy_s",
        "next_s",
        "answered_s",
    )

    def __init__(self, rid: int, launch_s: float, ready_s: float):
        self.rid = rid
        self.launch_s = launch_s
        self.ready_s = ready_s
        self.free_s = ready_s  # when the replica can start its next batch
        self.in_service = 0  # rows of the last batch: outstanding while free_s is ahead
        self.queue: deque[int] = deque()  # request indices, in arrival order
        self.draining = False
        self.stop_s: float | None = None
        self.busy_s = 0.0
        self.next_s = math.inf  # its next batch start or end (when it must be advanced)
        # when the last batch's answers are back at the gateway: the gateway counts a request
        # outstanding until then (its own and the network's time included)
        self.answered_s = ready_s

    def outstanding(self, now_s: float) -> int:
        return len(self.queue) + (self.in_service if self.answered_s > now_s else 0)

    def queued(self) -> int:
        return len(self.queue)


class Fleet:
    """The fleet's moves, shared by the one-model pool and the shared fleet
    (``ops/sim/shared_vm.py``): replicas launched, promoted when booted, scaled to a size.
    A subclass names its replica type (``_new``) and when a draining one can next stop
    (``_next_event``); its replicas have ``queued()`` and ``outstanding(now_s)``."""

    ready: list
    booting: list  # sorted by ready_s
    draining: list
    stopped: list
    next_event_s: float
    _rid: int

    def _new(self, rid: int, launch_s: float, ready_s: float):
        raise NotImplementedError

    def _next_event(self, r) -> float:
        raise NotImplementedError

    def launch(self, now_s: float, boot_s: float):
        self._rid += 1
        r = self._new(self._rid, now_s, now_s + boot_s)
        if boot_s <= 0:
            self.ready.append(r)
        else:
            self.booting.append(r)
            self.booting.sort(key=lambda x: x.ready_s)
        return r

    def promote(self, now_s: float) -> bool:
        """Booting replicas whose boot finished by ``now_s`` become ready."""
        moved = False
        while self.booting and self.booting[0].ready_s <= now_s:
            self.ready.append(self.booting.pop(0))
            moved = True
        return moved

    def scale_to(self, want: int, now_s: float, boot_s: float) -> None:
        current = len(self.ready) + len(self.booting)
        for _ in range(want - current):
            self.launch(now_s, boot_s)
        surplus = current - want
        # cancel booting replicas first (the latest first), then drain the least loaded
        for r in sorted(self.booting, key=lambda x: (x.queued(), -x.ready_s)):
            if surplus <= 0 or r.queued():
                break
            self.booting.remove(r)
            r.stop_s = now_s
            self.stopped.append(r)
            surplus -= 1
        for r in sorted(self.ready, key=lambda x: x.outstanding(now_s))[: max(surplus, 0)]:
            self.ready.remove(r)
            r.draining = True
            self.draining.append(r)
            r.next_s = self._next_event(r)
            self.next_event_s = min(self.next_event_s, r.next_s)


class VmPool(Fleet):
    """Replicas plus the per-request bookkeeping (latency, VM busy share per tenant)."""

    def __init__(
        self,
        profile,
        arrivals: list[float],
        latency_ms: list[float],
        tenant_of: list[int],
        n_tenants: int,
        rng,
    ):
        self.p = profile
        self.arr = arrivals
        self.lat = latency_ms
        self.tenant_of = tenant_of
        self.tenant_busy_s = [0.0] * n_tenants
        self.batch_max = profile.vm_max_batch_size
        # the batching wait (kept as a parameter of the start rule; 0: see the module docstring)
        self.delay_s = 0.0
        self.overhead_ms = profile.gateway_overhead_ms
        self.service_s = [0.0] + [
            profile.vm_service_ms(b) / 1000.0 for b in range(1, self.batch_max + 1)
        ]
        self.noise = (1.0 + profile.vm_service_cv * rng.standard_normal(65536)).clip(0.5).tolist()
        self.noise_i = 0
        self.ready: list[Replica] = []
        self.booting: list[Replica] = []  # sorted by ready_s
        self.draining: list[Replica] = []
        self.stopped: list[Replica] = []
        self.next_event_s = INF
        self.observed: list[float] = []  # latencies of finished VM requests (the engine drains)
        # ... of those that found their replica idle (nothing outstanding): one batch's service
        # and batching delay, no queueing (the spread the VM prediction's tail factor reads)
        self.observed_idle: list[float] = []
        self.batches = 0
        self._rid = 0

    # -- fleet (launch, promote, scale_to: ``Fleet``) ------------------------------------
    def _new(self, rid: int, launch_s: float, ready_s: float) -> Replica:
        return Replica(rid, launch_s, ready_s)

    def serving(self, now_s: float) -> int:
        """Replicas serving a batch at ``now_s`` (formed so far: batches form lazily)."""
        return sum(r.free_s > now_s for r in self.ready) + sum(
            r.free_s > now_s for r in self.draining
        )

    # -- requests ------------------------------------------------------------------------
    def enqueue(self, r: Replica, idx: int) -> None:
        q = r.queue
        q.append(idx)
        if len(q) == 1 or len(q) == self.batch_max:  # the next batch's start moves
            ev = self._next_event(r)
            r.next_s = ev
            if ev < self.next_event_s:
                self.next_event_s = ev

    def advance(self, now_s: float) -> None:
        """Form and finish every batch that starts or ends by ``now_s``."""
        nxt = INF
        for r in self.ready:
            if r.next_s <= now_s:
                self._advance(r, now_s)
                r.next_s = self._next_event(r)
            if r.next_s < nxt:
                nxt = r.next_s
        for group in (self.booting, self.draining) if self.booting or self.draining else ():
            for r in group:
                if r.next_s <= now_s:
                    self._advance(r, now_s)
                    r.next_s = self._next_event(r)
                if r.next_s < nxt:
                    nxt = r.next_s
        if self.draining:
            for r in [r for r in self.draining if not r.queue and r.free_s <= now_s]:
                self.draining.remove(r)
                r.stop_s = max(r.free_s, r.launch_s)
                self.stopped.append(r)
        self.next_event_s = nxt

    def _next_event(self, r: Replica) -> float:
        """When ``r``'s next batch can start (a draining, empty replica: when it can stop).
        Batch ends need no event: a replica's outstanding rows are read against ``free_s``."""
        q = r.queue
        if not q:
            return r.free_s if r.draining else INF
        start = self.arr[q[0]] + self.delay_s
        if len(q) >= self.batch_max:
            fill_s = self.arr[q[self.batch_max - 1]]
            if fill_s < start:
                start = fill_s
        return r.free_s if r.free_s > start else start

    def _advance(self, r: Replica, now_s: float) -> None:
        """Every batch of ``r`` that starts by ``now_s``; it runs once per batch (~0.6 per
        request), hence the hoisted locals and no helper calls."""
        arr, q, bmax, delay_s = self.arr, r.queue, self.batch_max, self.delay_s
        lat, tenant_of, busy = self.lat, self.tenant_of, self.tenant_busy_s
        seen, overhead_ms, service_s, noise = (
            self.observed,
            self.overhead_ms,
            self.service_s,
            self.noise,
        )
        while q:
            n = len(q)
            first_s = arr[q[0]]
            start = first_s + delay_s
            if n >= bmax and arr[q[bmax - 1]] < start:
                start = arr[q[bmax - 1]]
            if r.free_s > start:
                start = r.free_s
            if start > now_s:
                return
            k, top = 1, bmax if n >= bmax else n  # rows that arrived by the start, up to bmax
            while k < top and arr[q[k]] <= start:
                k += 1
            rows = [q.popleft() for _ in range(k)] if k > 1 else (q.popleft(),)
            self.noise_i = i = (self.noise_i + 1) & 65535
            service = service_s[k] * noise[i]
            end = start + service
            share = service / k
            for idx in rows:
                ms = (end - arr[idx]) * 1000.0 + overhead_ms
                lat[idx] = ms
                seen.append(ms)
                busy[tenant_of[idx]] += share
            if first_s >= r.answered_s:  # the previous batch was answered: found it idle
                self.observed_idle.append(lat[rows[0]])
            r.free_s, r.in_service = end, k
            r.answered_s = end + overhead_ms / 1000.0
            r.busy_s += service
            self.batches += 1

    def finish(self, end_s: float) -> None:
        """Serve everything still queued and stop every replica (billing ends)."""
        self.promote(INF)
        self.advance(INF)
        for r in self.ready + self.booting + self.draining:
            r.stop_s = max(end_s, r.free_s, r.launch_s)
            self.stopped.append(r)
        self.ready, self.booting, self.draining = [], [], []

    def billed_s(self, min_billed_s: float) -> tuple[float, float]:
        """(billed seconds, up seconds) over every replica that ever ran."""
        up = [max(r.stop_s - r.launch_s, 0.0) for r in self.stopped]
        return sum(max(u, min_billed_s) for u in up), sum(up)
