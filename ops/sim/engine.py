"""The discrete-event simulation: arrivals in time order, a control tick every ``tick_s``, the
gateway's routing policy and autoscaler (the very ``policies`` objects) deciding from snapshots.

Speed: routing is a pure function of (request, snapshot), so decisions are memoised on the
snapshot's fast-moving fields (per-replica queues, boot wait, functions in flight and warm);
the slow-moving fields (arrival rates, latency quantiles) are refreshed once per tick, as the
gateway's collector does, and the memo is dropped when what the policy reads of them changes
(``snap.tick_signature``; every tick for policies not known there). Arrivals are a sorted
array walked once, with no event per request; VM batches are formed lazily (``vm.py``).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import replace

import numpy as np

from policies.routing import Route
from policies.routing.async_class import QueueFirst
from policies.routing.error_budget import MissWindow
from policies.state import (
    ModelStats,
    RouteRequest,
)

from .burst_path import PATH_REJECT, burst, late
from .functions import FunctionPool
from .optimum import function_cost_per_request
from .queue import AsyncQueue
from .result import SimResult, Timeline
from .setup import SimSetup
from .snap import quantiles as _quantiles
from .snap import predicts_vm, queue_summary, snapshot, tick_signature
from .vm import VmPool
from .vm_error import PredictionFactor

SHORT_WINDOW_S = 10.0  # arrival-rate windows, as the gateway's collector keeps them
LONG_WINDOW_S = 120.0
LATENCY_WINDOW_TICKS = 30  # ticks of observed latencies behind the quantiles
QUANTILE_EVERY_TICKS = 5  # recomputed this often (a percentile per tick is a third of a day's run)
PATH_VM = 0  # (PATH_BURST, PATH_REJECT: burst_path.py)


class Simulation:
    def __init__(self, trace, setup: SimSetup):
        self.trace, self.s, self.p = trace, setup, setup.profile
        n = len(trace)
        self.arr_np = trace.arrivals_s
        self.arr = trace.arrivals_s.tolist()
        self.tenant_of = trace.tenant_idx.tolist()
        self.lat = [0.0] * n
        self.path = bytearray(n)
        rng = np.random.default_rng(setup.seed)
        # async-class tenants' requests may queue; the VMs batch each request from when it
        # reached them (``avail``: for a queued job, when a consumer took it)
        self.deadline_of, self.aq, avail = AsyncQueue.for_run(setup, trace, self.arr, self.lat)
        self.vm = VmPool(self.p, avail, self.lat, self.tenant_of, len(trace.tenants), rng)
        run_tail_ms = self.p.burst_quantile_ms(setup.slo_percentile)
        self.fn = FunctionPool(self.p, setup.seed + 1, run_tail_ms)
        self.fn_billed_by_tenant = [0.0] * len(trace.tenants)
        self.fn_requests_by_tenant = [0] * len(trace.tenants)
        self.requests = [
            RouteRequest(
                tenant=t,
                model=self.p.model,
                batch_size=1,
                slo_ms=setup.slo_ms_by_tenant.get(t, self.p.slo_ms),
                slo_percentile=setup.slo_percentile,
            )
            for t in trace.tenants
        ]
        self.timeline = Timeline()
        self.warm_cost_usd = 0.0
        self.desired = setup.initial_replicas
        self.rejected = 0
        self._cache: dict = {}
        exact = setup.exact_route_keys
        self._queue_key = None if exact else queue_summary(setup.routing)
        self._tick_sig = None if exact else tick_signature(setup.routing, setup.slo_percentile)
        # answers and misses, as the gateway's collector counts them for the error budget
        self._slo_window = MissWindow(getattr(setup.routing, "budget_window_s", 3600.0))
        self._tick_slo = [0, 0]  # burst answers and misses since the last tick
        self._last_sig = None
        self._stats = ModelStats(slo_ms=self.p.slo_ms)
        self._lat_ring: list[tuple[np.ndarray, np.ndarray]] = []
        self._n_ticks = 0
        self._vm_q = self._vm_idle_q = self._burst_q = None
        self._window_idx = (0, 0, 0)
        self._parts: dict = {}  # snapshot parts of this tick, by their fields
        self._models: dict = {}
        self._burst_predicted_ms = self.p.burst_quantile_ms(setup.slo_percentile)
        # a burst request's price as the gateway's plan predicts it (compute, fees, store)
        self._burst_usd = function_cost_per_request(self.p, setup.prices, check_slo=False)[0]
        self._tick_burst: list[float] = []
        self._tick_counts = [0, 0, 0]
        self._queue_first = QueueFirst(setup.routing)
        # slo-aware predictions are scaled by what the gateway learns of their error
        self.learnt = (
            PredictionFactor(self.arr, self.arr_np, self.lat, self.p, setup.routing.budget_quantile)
            if predicts_vm(setup.routing)
            else None
        )

    # -- snapshots -----------------------------------------------------------------------
    _snapshot = snapshot  # (snap.py)
    _burst = burst  # a spill: served by the function pool or refused (burst_path.py)

    def _refresh_stats(self, now_s: float) -> None:
        a, (hi, lo_s, lo_l) = self.arr, self._window_idx
        hi = bisect_left(a, now_s, hi)
        lo_s = bisect_left(a, now_s - SHORT_WINDOW_S, lo_s)
        lo_l = bisect_left(a, now_s - LONG_WINDOW_S, lo_l)
        self._window_idx = (hi, lo_s, lo_l)
        short, long_ = (hi - lo_s) / SHORT_WINDOW_S, (hi - lo_l) / LONG_WINDOW_S
        vm = self.vm
        self._lat_ring.append(
            (np.asarray(vm.observed), np.asarray(vm.observed_idle), np.asarray(self._tick_burst))
        )
        seen, slo = self._lat_ring[-1][0], self._tick_slo
        missed = int(np.count_nonzero(seen > self.p.slo_ms)) + slo[1]
        self._slo_window.add(now_s, seen.size + slo[0], missed)
        answered, missed = self._slo_window.counts(now_s)
        vm.observed, vm.observed_idle, self._tick_burst, self._tick_slo = [], [], [], [0, 0]
        if len(self._lat_ring) > LATENCY_WINDOW_TICKS:
            self._lat_ring.pop(0)
        self._n_ticks += 1
        factors = self.learnt.table if self.learnt else None
        if self._n_ticks % QUANTILE_EVERY_TICKS == 1 or QUANTILE_EVERY_TICKS == 1:
            factors = self.learnt.update(now_s) if self.learnt else None
            self._vm_q = _quantiles([v for v, _, _ in self._lat_ring])
            self._vm_idle_q = _quantiles([v for _, v, _ in self._lat_ring])
            self._burst_q = _quantiles([b for _, _, b in self._lat_ring])
        self._stats = ModelStats(
            arrival_rate_short_per_s=float(short),
            arrival_rate_long_per_s=float(long_),
            vm_service_ms_by_batch=self.p.vm_service_ms_by_batch,
            vm_latency=self._vm_q,
            vm_service_latency=self._vm_idle_q,
            burst_latency=self._burst_q,
            burst_predicted_ms=self._burst_predicted_ms,
            burst_usd=self._burst_usd,
            vm_prediction_factors=factors,
            vm_budget_factors=self.learnt.budget_table if self.learnt else None,
            slo_ms=self.p.slo_ms,
            slo_answered=answered,
            slo_missed=missed,
        )
        self._models = {self.p.model: self._stats}  # one mapping per tick, shared
        self._parts = {}

    # -- control tick --------------------------------------------------------------------
    def _tick(self, now_s: float) -> None:
        vm, fn = self.vm, self.fn
        vm.promote(now_s)
        vm.advance(now_s)
        fn.release(now_s)
        self._refresh_stats(now_s)
        if self.aq is not None:
            self.aq.drain(now_s, vm)
        state = self._snapshot(now_s, now_s, queue=self.aq.state(now_s) if self.aq else None)
        decision = self.s.autoscaler.decide(state)
        self.desired = decision.replicas
        vm.scale_to(decision.replicas, now_s, self.p.vm_boot_s)
        if decision.warm_functions:
            fn.keep_warm(decision.warm_functions, now_s)
            if fn.late:  # pool starts sharing the host's cores pushed answers back
                late(self)
        c = self._tick_counts
        self.timeline.add(
            now_s,
            c[0] + c[1] + c[2],
            c[0],
            c[1],
            c[2],
            len(vm.ready),
            len(vm.booting),
            decision.replicas,
            fn.warm_groups() * fn.k,
        )
        self._tick_counts = [0, 0, 0]
        fn.recent_cold = 0
        # decisions carry over while what the policy reads of this tick's state is unchanged
        sig = self._tick_sig(self._stats) if self._tick_sig else None
        if sig is None or sig != self._last_sig:
            self._cache.clear()
        self._last_sig = sig
        self._parts = {}  # desired_replicas changed

    # -- the loop ------------------------------------------------------------------------
    def run(self) -> SimResult:
        for _ in range(self.s.initial_replicas):
            self.vm.launch(0.0, 0.0)
        end_s = self._loop()
        if self.aq is not None:  # the consumers serve what is left after the trace
            self.aq.flush(end_s, self.vm)
        self.vm.finish(end_s)
        self.warm_cost_usd = self.fn.warm_usd(self.s.prices)  # pool starts and pings, billed
        return SimResult.build(self, end_s)

    def _loop(self) -> float:
        """Every arrival in order; kept flat and local-variable heavy: it runs 10 M times."""
        # size: the event loop is kept in one function because it runs once per request:
        # with the per-replica queue tuple and the power-of-two replica pick as helpers, a
        # 300k-request day (slo-aware) took 11.00 s CPU against 10.65 s flat (best of 7
        # interleaved runs; 6 of 7 pairs slower, by 3-10 %), more at 10 M requests.
        vm, fn, arr, tenant_of = self.vm, self.fn, self.arr, self.tenant_of
        avail, aq, deadline_of = vm.arr, self.aq, self.deadline_of
        raw = self.learnt.raw_ms if self.learnt else None
        unscale = self._unscale()
        route, requests, tick_s = self.s.routing.route, self.requests, self.s.tick_s
        rand = np.random.default_rng(self.s.seed + 2).random(1 << 16).tolist()
        ri, tick_at, next_tick = 0, 0.0, 0.0
        cache, counts = self._cache, self._tick_counts
        # the pools' lists are mutated in place, never replaced, while the loop runs
        ready, booting, fn_ends = vm.ready, vm.booting, fn.request_ends
        bmax, delay_s = vm.batch_max, vm.delay_s
        summary = {} if self._queue_key else None
        # the key's slow parts (boots, functions busy/idle, recent cold starts), rebuilt only
        # after the events that change them: a tick, a boot ending, functions freed, a burst
        side = self._side_key()
        VM, BURST = Route.VM, Route.BURST
        for i, t in enumerate(arr):
            if t >= next_tick:
                while t >= next_tick:
                    self._tick(next_tick)
                    tick_at, next_tick = next_tick, next_tick + tick_s
                cache, counts, side = self._cache, self._tick_counts, self._side_key()
                unscale = self._unscale()
            if booting and booting[0].ready_s <= t:
                vm.promote(t)
                vm.next_event_s = t
                side = self._side_key()
            if t >= vm.next_event_s:
                vm.advance(t)
            if fn_ends and fn_ends[0] <= t:  # a request's end comes no later than its group's
                fn.release(t)
                side = self._side_key()
            if aq is not None and (aq.pending or aq.running):
                aq.drain(t, vm)
            ten = tenant_of[i]
            if deadline_of[ten] is not None and self._queued(i, t, ten, tick_at):
                counts[0] += 1
                continue
            n = len(ready)
            if n == 1:
                r = ready[0]
                per = pk = ((r.in_service if r.answered_s > t else 0) + len(r.queue),)
            else:  # outstanding rows per ready replica, sorted (order carries nothing)
                outs = [(r.in_service if r.answered_s > t else 0) + len(r.queue) for r in ready]
                per = pk = tuple(sorted(outs))
                if summary is not None and n:  # the queue summary, memoised (pure in per)
                    pk = summary.get(per)
                    if pk is None:
                        pk = summary[per] = (n, self._queue_key(per))
            key = (ten, pk, side, self._no_ready_key(t) if booting and not n else 0.0)
            decision = cache.get(key)
            if decision is None:
                decision = route(requests[ten], self._snapshot(t, tick_at, per))
                cache[key] = decision
            where = decision.route
            if where is VM:
                if n > 1:  # power of two choices on outstanding rows, two distinct replicas
                    ri = (ri + 2) & 65535  # (as vmpool's pick: with one replica drawn twice,
                    a, b = int(rand[ri] * n), int(rand[ri - 1] * (n - 1))  # two landed on
                    b += b >= a  # the longer queue a quarter of the time)
                    r = ready[a] if outs[a] <= outs[b] else ready[b]
                elif not n:
                    r = booting[0]
                q = r.queue  # enqueue: the next batch's start moves with the first or last row
                q.append(i)
                if len(q) == 1 or len(q) == bmax:
                    ev = avail[q[0]] + delay_s
                    if len(q) >= bmax and t < ev:
                        ev = t
                    if r.free_s > ev:
                        ev = r.free_s
                    r.next_s = ev
                    if ev < vm.next_event_s:
                        vm.next_event_s = ev
                counts[0] += 1
                if raw is not None:  # what the gateway compares its answer with, unscaled
                    raw[i] = unscale(decision.predicted_ms or 0.0)
            elif where is BURST:
                counts[1 if self._burst(i, t, ten) else 2] += 1
                side = self._side_key()
            else:
                self.lat[i] = math.inf
                self.path[i] = PATH_REJECT
                self.rejected += 1
                counts[2] += 1
        return max(arr[-1], next_tick) if arr else 0.0

    def _queued(self, i: int, t: float, ten: int, tick_at: float) -> bool:
        """An async tenant's request, queued if ``QueueFirst`` finds the queue meets its
        deadline (as the gateway's placement asks it); else routed as any other."""
        req = replace(self.requests[ten], deadline_s=self.deadline_of[ten])
        state = self._snapshot(t, tick_at, queue=self.aq.state(t))
        if self._queue_first.route(req, state).route is not Route.QUEUE:
            return False
        self.aq.put(i)
        return True

    def _unscale(self):
        """``published prediction -> raw`` under this tick's factors, as the gateway recovers
        it (memoised: routing decisions, and so their predictions, repeat)."""
        table, memo = self._stats.vm_prediction_factors, {0.0: 0.0}
        if table is None:
            return float

        def unscale(predicted_ms: float) -> float:
            raw_ms = memo.get(predicted_ms)
            if raw_ms is None:
                raw_ms = memo[predicted_ms] = table.raw_of(predicted_ms)
            return raw_ms

        return unscale

    def _side_key(self) -> tuple:
        fn = self.fn
        return (
            len(self.vm.booting),
            len(fn.busy),
            len(fn.request_ends),
            len(fn.idle),
            fn.recent_cold,
        )

    def _no_ready_key(self, t: float) -> tuple:
        """What a snapshot without ready replicas adds: the boot wait and the rows waiting."""
        vm = self.vm
        waiting = sum([len(b.queue) for b in vm.booting])
        waiting += sum([r.outstanding(t) for r in vm.draining])
        return round(vm.booting[0].ready_s - t, 1), waiting
