"""The VM fleet of one gateway serving several models (``--fleet shared``): every replica holds
every model, and the pool's pick (power of two choices on outstanding requests, all models
counted) sends any model's request to any ready replica.

As the model server runs them (``vmpool.dataplane``): each model has its own batcher on a
replica, so batches are per model (a model's rows only, up to its ``max_batch_size``) and a
model runs one batch at a time. Its batches compete for the replica's cores with the other
models': a replica running one model's batch is busy for the others (a model that computes
waits for the cores; the next batch goes to the model whose oldest request came first). A
model whose VM time is a wait, not compute (the ``delay`` load-test model: its thread sleeps
and takes no core), runs beside the others. Replicas are advanced lazily, as ``vm.py``'s.
"""

from __future__ import annotations

import math
from collections import deque

from ops.sim.vm import Fleet
from policies.routing.replica_choice import ModelWork

INF = math.inf


class SharedReplica:
    __slots__ = (
        "rid",
        "launch_s",
        "ready_s",
        "stop_s",
        "draining",
        "busy_s",
        "next_s",
        "queues",
        "qn",
        "free_s",
        "in_service",
        "answered_s",
        "cores_free_s",
        "idle_s",
    )

    def __init__(self, rid: int, launch_s: float, ready_s: float, models: int):
        self.rid, self.launch_s, self.ready_s = rid, launch_s, ready_s
        self.stop_s: float | None = None
        self.draining = False
        self.busy_s = 0.0
        self.next_s = INF
        self.queues = [deque() for _ in range(models)]  # per model, request indices
        self.qn = 0  # rows queued over every model (read once per request: kept, not summed)
        self.free_s = [ready_s] * models  # when each model's batcher can start its next batch
        self.in_service = [0] * models
        self.answered_s = [ready_s] * models
        self.cores_free_s = ready_s  # when the batch computing on its cores ends
        self.idle_s = ready_s  # when every answer so far is back: the replica found idle

    def outstanding(self, now_s: float) -> int:
        n = self.qn
        if self.idle_s > now_s:  # (else every batch was answered)
            for k, a in zip(self.in_service, self.answered_s):
                if a > now_s:
                    n += k
        return n

    def queued(self) -> int:
        return self.qn

    def rows_by_model(self, now_s: float) -> list[int]:
        """Outstanding rows per model at ``now_s`` (``outstanding``'s, split by model)."""
        rows = [len(q) for q in self.queues]
        if self.idle_s > now_s:
            for m, (k, a) in enumerate(zip(self.in_service, self.answered_s)):
                if a > now_s:
                    rows[m] += k
        return rows


class SharedVmPool(Fleet):
    """Replicas of every model plus the per-request bookkeeping, per model and tenant."""

    def __init__(self, profiles: list, arrivals, latency_ms, tenant_of, model_of, n_tenants, rng):
        self.arr, self.lat, self.tenant_of, self.model_of = (
            arrivals,
            latency_ms,
            tenant_of,
            model_of,
        )
        self.n = len(profiles)
        self.batch_max = [p.vm_max_batch_size for p in profiles]
        self.overhead_s = [p.gateway_overhead_ms / 1000.0 for p in profiles]
        self.overhead_ms = [p.gateway_overhead_ms for p in profiles]
        self.computes = [not waits_only(p) for p in profiles]
        # what each model's rows cost a replica, as replica choice weighs them (the profile's
        # curve: the one the lanes' statistics carry, as the gateway's collector learns it)
        self.works = [
            ModelWork(p.vm_service_ms_by_batch, p.vm_max_batch_size, c)
            for p, c in zip(profiles, self.computes, strict=True)
        ]
        self.service_s = [
            [0.0] + [p.vm_service_ms(b) / 1000.0 for b in range(1, p.vm_max_batch_size + 1)]
            for p in profiles
        ]
        cv = [p.vm_service_cv for p in profiles]
        base = rng.standard_normal(65536)
        self.noise = [(1.0 + c * base).clip(0.5).tolist() for c in cv]
        self.noise_i = 0
        self.ready: list[SharedReplica] = []
        self.booting: list[SharedReplica] = []  # sorted by ready_s
        self.draining: list[SharedReplica] = []
        self.stopped: list[SharedReplica] = []
        self.next_event_s = INF
        self.observed = [[] for _ in profiles]  # finished VM latencies per model (engine drains)
        self.observed_idle = [[] for _ in profiles]
        self.tenant_busy_s = [[0.0] * n_tenants for _ in profiles]
        self.model_busy_s = [0.0] * self.n
        self.batches = [0] * self.n
        self._rid = 0

    # -- fleet (launch, promote, scale_to: ``vm.Fleet``) --------------------------------
    def _new(self, rid: int, launch_s: float, ready_s: float) -> SharedReplica:
        return SharedReplica(rid, launch_s, ready_s, self.n)

    def serving(self, now_s: float) -> int:
        """Replicas serving a batch at ``now_s`` (of the batches formed so far)."""
        return sum(max(r.free_s) > now_s for r in self.ready) + sum(
            max(r.free_s) > now_s for r in self.draining
        )

    def others_in_way(self, r: SharedReplica, m: int, now_s: float) -> bool:
        """Whether ``r`` holds rows of models other than ``m`` that ``m`` waits behind
        (``replica_choice.blocking_ms`` > 0, or may be: only computing models' count)."""
        if not self.computes[m]:
            return False
        own = len(r.queues[m])
        if r.idle_s > now_s and r.answered_s[m] > now_s:
            own += r.in_service[m]
        return r.outstanding(now_s) > own

    # -- requests --------------------------------------------------------------------------
    def enqueue(self, r: SharedReplica, m: int, idx: int) -> None:
        q = r.queues[m]
        q.append(idx)
        r.qn += 1
        if len(q) == 1:  # (no batching wait: a batch starts with the rows that have arrived)
            # the replica's next start is the earliest of its models' (``_next``): the others'
            # are unchanged (``r.next_s``; a replica taking requests is not draining), so only
            # this model's is new
            ev = self.arr[idx]
            if r.free_s[m] > ev:
                ev = r.free_s[m]
            if self.computes[m] and r.cores_free_s > ev:
                ev = r.cores_free_s
            if ev < r.next_s:
                r.next_s = ev
                if ev < self.next_event_s:
                    self.next_event_s = ev

    def advance(self, now_s: float) -> None:
        """Form and finish every batch that starts by ``now_s``."""
        nxt = INF
        for group in (self.ready, self.booting, self.draining):
            for r in group:
                if r.next_s <= now_s:
                    r.next_s = self._advance(r, now_s)
                if r.next_s < nxt:
                    nxt = r.next_s
        if self.draining:
            for r in [r for r in self.draining if not r.queued() and max(r.free_s) <= now_s]:
                self.draining.remove(r)
                r.stop_s = max(max(r.free_s), r.launch_s)
                self.stopped.append(r)
        self.next_event_s = nxt

    def _next(self, r: SharedReplica) -> tuple[float, int]:
        """(start, model) of the batch ``r`` runs next: the earliest start, then the oldest."""
        best, best_m, head = INF, -1, INF
        arr, free, cores, computes = self.arr, r.free_s, r.cores_free_s, self.computes
        for m, q in enumerate(r.queues):  # (``_start`` inlined: it runs once per batch)
            if q:
                s = h = arr[q[0]]
                if free[m] > s:
                    s = free[m]
                if computes[m] and cores > s:
                    s = cores
                if s < best or (s == best and h < head):
                    best, best_m, head = s, m, h
        return best, best_m

    def _next_event(self, r: SharedReplica) -> float:
        start, m = self._next(r)
        if m < 0:
            return max(r.free_s) if r.draining else INF
        return start

    def _advance(self, r: SharedReplica, now_s: float) -> float:
        """Every batch of ``r`` that starts by ``now_s``; returns when its next one can start
        (``_next_event``). It runs once per batch: ``_next`` inlined, locals hoisted."""
        arr, lat, tenant_of = self.arr, self.lat, self.tenant_of
        queues, free, computes = r.queues, r.free_s, self.computes
        while True:
            best, m, head = INF, -1, INF
            cores = r.cores_free_s
            for j, q in enumerate(queues):  # the earliest start, then the oldest request
                if q:
                    s = h = arr[q[0]]
                    if free[j] > s:
                        s = free[j]
                    if computes[j] and cores > s:
                        s = cores
                    if s < best or (s == best and h < head):
                        best, m, head = s, j, h
            if m < 0:
                return max(free) if r.draining else INF
            if best > now_s:
                return best
            start = best
            q, top = queues[m], self.batch_max[m]
            k, top = 1, min(top, len(q))
            while k < top and arr[q[k]] <= start:
                k += 1
            rows = [q.popleft() for _ in range(k)] if k > 1 else (q.popleft(),)
            r.qn -= k
            self.noise_i = i = (self.noise_i + 1) & 65535
            service = self.service_s[m][k] * self.noise[m][i]
            end = start + service
            share, overhead_ms = service / k, self.overhead_ms[m]
            seen, busy = self.observed[m], self.tenant_busy_s[m]
            for idx in rows:
                ms = (end - arr[idx]) * 1000.0 + overhead_ms
                lat[idx] = ms
                seen.append(ms)
                busy[tenant_of[idx]] += share
            if arr[rows[0]] >= r.idle_s:  # nothing was outstanding when it came
                self.observed_idle[m].append(lat[rows[0]])
            free[m], r.in_service[m] = end, k
            r.answered_s[m] = answered = end + self.overhead_s[m]
            if computes[m]:
                r.cores_free_s = end
            if answered > r.idle_s:
                r.idle_s = answered
            r.busy_s += service
            self.model_busy_s[m] += service
            self.batches[m] += 1

    def finish(self, end_s: float) -> None:
        self.promote(INF)
        self.advance(INF)
        for r in self.ready + self.booting + self.draining:
            r.stop_s = max(end_s, max(r.free_s), r.launch_s)
            self.stopped.append(r)
        self.ready, self.booting, self.draining = [], [], []

    def billed_s(self, min_billed_s: float) -> tuple[float, float]:
        up = [max(r.stop_s - r.launch_s, 0.0) for r in self.stopped]
        return sum(max(u, min_billed_s) for u in up), sum(up)


WAITS_KEY = "vm_waits_only"  # in a profile's ``extra``: set for a repository's delay models


def waits_only(profile) -> bool:
    """A model whose VM time is a wait, not compute (the ``delay`` model's sleep): its batches
    take no core, so they run beside the other models' on a replica."""
    return profile.model == "delay" or bool(profile.extra.get(WAITS_KEY))


def mark_waits_only(profile, repo):
    """``profile`` marked as waiting where ``repo``'s artifact of its model is the zoo's
    ``delay`` model under another name (its config's ``source = "zoo:delay"``)."""
    import tomllib
    from dataclasses import replace
    from pathlib import Path

    path = Path(repo) / profile.model / "config.toml"
    try:
        source = tomllib.loads(path.read_text()).get("source")
    except (OSError, tomllib.TOMLDecodeError):
        return profile
    if source != "zoo:delay":
        return profile
    return replace(profile, extra={**profile.extra, WAITS_KEY: True})
