# size: ~355 lines: the shared engine's snapshots, tick and per-request loop share its state
"""The shared fleet of a gateway serving several models (``tidegate simulate --fleet shared``,
the default on a trace of several models): one VM fleet whose replicas hold every model
(``shared_vm.py``), one autoscaler fed the snapshot the gateway's control loop gives it (every
model's statistics, the fleet's VM state, the function platform's), one routing policy asked
per request with that request's model, and each model's burst path with its own plan and SLO
(``shared_lane.py``).

The function platform is one per model here (each model's plan and instance groups; their
concurrency caps are each model's profile's): the snapshot the scaler reads adds them up, and the
warm functions it asks for are split over the models by their share of recent arrivals.
Decisions are memoised within a tick on everything the snapshot holds that moves between
requests, and dropped every tick (no ``snap.tick_signature`` short cut here).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from policies.routing import Route
from policies.state import BurstState, LiveState, VmState

from .burst_path import PATH_REJECT, burst, late
from .functions import lend_between
from .result import Timeline
from .shared_lane import Lane
from .shared_pick import answer_at, pick_by_time
from .shared_vm import SharedVmPool
from .snap import frozen, queue_summary, tick_signature


@dataclass
class SharedSetup:
    """Everything one shared-fleet run needs besides the trace (``SimSetup``'s, per model)."""

    profiles: list  # SimProfile per model, in the trace's model order
    routing: object
    autoscaler: object
    prices: object
    initial_replicas: int = 1
    tick_s: float = 1.0
    slo_ms_by_tenant: dict[str, float] = field(default_factory=dict)
    slo_percentile: float = 0.99
    seed: int = 0
    name: str = ""
    exact_route_keys: bool = False  # cache routing on whole snapshots only (tests compare)
    rows_only_choice: bool = False  # power of two on rows alone (before session 26: compare)


class SharedSimulation:
    def __init__(self, trace, setup: SharedSetup):
        if len(setup.profiles) != len(trace.models):
            raise ValueError("a shared-fleet run needs one profile per model of the trace")
        self.trace, self.s = trace, setup
        n = len(trace)
        self.arr_np = trace.arrivals_s
        self.arr = trace.arrivals_s.tolist()
        self.tenant_of = trace.tenant_idx.tolist()
        self.model_of = trace.model_idx.tolist()
        self.lat = [0.0] * n
        self.path = bytearray(n)
        rng = np.random.default_rng(setup.seed)
        ps = setup.profiles
        self.vm = SharedVmPool(
            ps, self.arr, self.lat, self.tenant_of, self.model_of, len(trace.tenants), rng
        )
        self.lanes = [Lane(m, self, p, setup) for m, p in enumerate(ps)]
        for lane in self.lanes:  # one function platform: one concurrency cap
            lane.fn.peers = [other.fn for other in self.lanes]
        lend_between([lane.fn for lane in self.lanes])  # and the same functions (simlend)
        self.boot_s = max(p.vm_boot_s for p in ps)
        self.max_batch = max(p.vm_max_batch_size for p in ps)  # as the gateway's collector
        self.queue_delay_ms = min(p.vm_max_queue_delay_ms for p in ps)
        self.timeline = Timeline()
        self.desired = setup.initial_replicas
        self._models: dict = {}
        self._rates = (0.0, 0.0)  # the models' arrival rates summed (short, long window)
        self._cache: dict = {}
        self._budgets: dict = {}  # (model, tenant) -> the routing policy's VM budget, ms
        # parts of this tick's snapshots, by their fields: the fleet's, a model's functions'
        self._vm_parts: dict = {}
        self._burst_parts: dict = {}
        self._tick_counts = [0, 0, 0]
        # routing memoised as the one-model engine does (``engine.py``, ``snap.py``): keyed on
        # the queue summary the policy reads, carried over ticks while what it reads of each
        # model's statistics is unchanged
        exact = setup.exact_route_keys
        self._queue_key = None if exact else queue_summary(setup.routing)
        self._tick_sig = None if exact else tick_signature(setup.routing, setup.slo_percentile)
        self._last_sig = None

    # -- snapshots -------------------------------------------------------------------------
    def _vm_state(self, now_s: float, per: tuple) -> VmState:
        vm = self.vm
        return self._vm_part(per, self._slow_key(now_s) if vm.booting or vm.draining else None)

    def _vm_part(self, per: tuple, slow: tuple | None) -> VmState:
        """The fleet's state with ``per`` ready queues and ``slow`` (``_slow_key``: None, no
        replica booting or draining); equal states of a tick share one object (frozen)."""
        made = self._vm_parts.get((per, slow))
        if made is not None:
            return made
        booting, draining, boot_left, waiting = slow or (0, 0, 0.0, 0)
        made = self._vm_parts[per, slow] = frozen(
            VmState,
            ready_replicas=len(per),
            booting_replicas=booting,
            outstanding=sum(per) + waiting,
            max_batch_size=self.max_batch,
            desired_replicas=self.desired,
            outstanding_per_replica=per,
            boot_remaining_s=boot_left,
            boot_s=self.boot_s,
            max_queue_delay_ms=self.queue_delay_ms,
            draining_replicas=draining,
        )
        return made

    def _burst_state(self, lanes) -> BurstState:
        from policies.routing.slo_aware import burst_instances

        p = lanes[0].p
        k = [burst_instances(lane.p.burst_workers) for lane in lanes]
        fns = [lane.fn for lane in lanes]
        return frozen(
            BurstState,
            in_flight=sum(len(f.request_ends) for f in fns),
            warm_instances=sum(f.warm_groups() * kk for f, kk in zip(fns, k, strict=True)),
            free_concurrency=self._free_instances(lanes, k),
            recent_cold_starts=sum(f.recent_cold for f in fns),
            cold_start_ms=max(lane.p.cold_start_ms for lane in lanes),
            memory_mb=p.burst_memory_mb,
            # the most of the models' plans, as live (gateway/live.py _plan_workers)
            default_workers=max(lane.p.burst_workers for lane in lanes),
        )

    def _free_instances(self, lanes, k: list[int]) -> int:
        """Instances that may still start: the platform's cap less every model's in use."""
        if len(lanes) == 1:  # (routing asks for the request's model: its pool's view)
            f = lanes[0].fn
            return (f.cap_groups - len(f.busy)) * k[0]
        fns = [lane.fn for lane in self.lanes]
        cap = max(f.platform_slots for f in fns)
        return max(cap - sum(len(f.busy) * f.slots for f in fns), 0)

    def _state(self, now_s: float, tick_s: float, per: tuple, lanes) -> LiveState:
        """The snapshot the autoscaler reads (``lanes``: every model)."""
        return self._live(tick_s, self._vm_state(now_s, per), self._burst_state(lanes))

    def _route_state(self, tick_s: float, per: tuple, slow, lane, fn_key: tuple) -> LiveState:
        """The snapshot routing reads for ``lane``'s request (``fn_key``: its pool's fields in
        the route key)."""
        burst_state = self._burst_parts.get(fn_key)  # (equal within a tick: one object, shared)
        if burst_state is None:
            burst_state = self._burst_parts[fn_key] = self._burst_state([lane])
        return self._live(tick_s, self._vm_part(per, slow), burst_state)

    def _live(self, tick_s: float, vm_state: VmState, burst_state: BurstState) -> LiveState:
        short, long_ = self._rates
        return frozen(
            LiveState,
            now_s=tick_s,
            vm=vm_state,
            burst_enabled=True,
            burst=burst_state,
            models=self._models,
            arrival_rate_short_per_s=short,
            arrival_rate_long_per_s=long_,
        )

    # -- control tick ----------------------------------------------------------------------
    def _tick(self, now_s: float) -> None:
        vm = self.vm
        vm.promote(now_s)
        vm.advance(now_s)
        models = {}
        for lane in self.lanes:
            lane.fn.release(now_s)
            m = lane.m
            models[lane.model] = lane.refresh(now_s, vm.observed[m], vm.observed_idle[m])
            vm.observed[m], vm.observed_idle[m] = [], []
        self._models = models
        self._rates = (
            sum(s.arrival_rate_short_per_s for s in models.values()),
            sum(s.arrival_rate_long_per_s for s in models.values()),
        )
        self._vm_parts, self._burst_parts = {}, {}
        per = tuple(sorted(r.outstanding(now_s) for r in vm.ready))
        decision = self.s.autoscaler.decide(self._state(now_s, now_s, per, self.lanes))
        self.desired = decision.replicas
        vm.scale_to(decision.replicas, now_s, self.boot_s)
        warm = 0
        if decision.warm_functions:
            warm = self._keep_warm(decision.warm_functions, now_s)
        c = self._tick_counts
        self.timeline.add(
            now_s, sum(c), c[0], c[1], c[2], len(vm.ready), len(vm.booting), decision.replicas, warm
        )
        self._tick_counts = [0, 0, 0]
        for lane in self.lanes:
            lane.fn.recent_cold = 0
        sig = tuple(self._tick_sig(lane.stats) for lane in self.lanes) if self._tick_sig else None
        if sig is None or sig != self._last_sig:
            self._cache.clear()
        self._last_sig = sig
        self._vm_parts, self._burst_parts = {}, {}
        for lane in self.lanes:
            lane.unscaled = {}

    def _keep_warm(self, instances: int, now_s: float) -> int:
        """The warm functions asked for, split over the models by recent arrivals."""
        rates = [lane.stats.arrival_rate_long_per_s for lane in self.lanes]
        total = sum(rates)
        warm = 0
        for lane, rate in zip(self.lanes, rates, strict=True):
            share = rate / total if total > 0 else 1.0 / len(self.lanes)
            want = math.ceil(instances * share)
            if want:
                lane.fn.keep_warm(want, now_s)
                if lane.fn.late:
                    late(lane)
            warm += lane.fn.warm_groups() * lane.fn.k
        return warm

    # -- the loop --------------------------------------------------------------------------
    def run(self):
        from .shared_result import build_shared

        for _ in range(self.s.initial_replicas):
            self.vm.launch(0.0, 0.0)
        end_s = self._loop()
        self.vm.finish(end_s)
        for lane in self.lanes:
            lane.warm_cost_usd = lane.fn.warm_usd(self.s.prices)
        return build_shared(self, end_s)

    def _loop(self) -> float:
        # size: one function, as Simulation._loop: it runs once per request
        vm, arr, lanes = self.vm, self.arr, self.lanes
        tenant_of, model_of = self.tenant_of, self.model_of
        route, tick_s = self.s.routing.route, self.s.tick_s
        rand = np.random.default_rng(self.s.seed + 2).random(1 << 16).tolist()
        ri, tick_at, next_tick = 0, 0.0, 0.0
        # (the pool's lists and the route cache are mutated in place, never replaced)
        ready, booting, draining, cache = vm.ready, vm.booting, vm.draining, self._cache
        counts = self._tick_counts
        queue_key = self._queue_key
        summary = {} if queue_key else None
        peers = len(lanes) > 1
        works = vm.works if peers and not self.s.rows_only_choice else None
        second = getattr(self.s.routing, "replica_misses", None) if works else None  # slo-aware
        VM, BURST = Route.VM, Route.BURST
        for i, t in enumerate(arr):
            if t >= next_tick:
                while t >= next_tick:
                    self._tick(next_tick)
                    tick_at, next_tick = next_tick, next_tick + tick_s
                counts = self._tick_counts
            if booting and booting[0].ready_s <= t:
                vm.promote(t)
                vm.next_event_s = t
            if t >= vm.next_event_s:
                vm.advance(t)
            lane = lanes[model_of[i]]
            fn = lane.fn
            if fn.request_ends and fn.request_ends[0] <= t:
                fn.release(t)
            ten = tenant_of[i]
            # outstanding rows per ready replica (``SharedReplica.outstanding``, inlined where
            # every batch it ran was answered), sorted: order carries nothing
            outs = [r.qn if r.idle_s <= t else r.outstanding(t) for r in ready]
            n = len(outs)
            per = pk = tuple(sorted(outs)) if n > 1 else tuple(outs)
            if summary is not None and n > 1:  # the queue summary, memoised (pure in per)
                pk = summary.get(per)
                if pk is None:
                    pk = summary[per] = (n, queue_key(per))
            slow = self._slow_key(t) if booting or draining else None
            # its pool's free slots depend on the other models' busy instances too
            fn_key = (lane.m, len(fn.busy), len(fn.request_ends), len(fn.idle), fn.recent_cold)
            if peers:
                fn_key += (fn.cap_groups,)
            key = (ten, pk, slow, fn_key)  # (warm groups are busy + idle)
            decision = cache.get(key)
            if decision is None:
                state = self._route_state(tick_at, per, slow, lane, fn_key)
                decision = cache[key] = route(lane.requests[ten], state)
            where = decision.route
            if where is VM:
                if n > 1:  # power of two choices on outstanding rows, two distinct replicas
                    ri = (ri + 2) & 65535
                    a, b = int(rand[ri] * n), int(rand[ri - 1] * (n - 1))
                    b += b >= a
                    k = a if outs[a] <= outs[b] else b
                    if works is not None and vm.others_in_way(ready[k], lane.m, t):
                        # weighed by time, per model (policies/routing/replica_choice.py; its
                        # pick where nothing else is in the way, inlined above: per request)
                        k = pick_by_time(ready, lane.m, works, k, t)
                    r = ready[k]
                else:
                    r = ready[0] if n else booting[0] if booting else None
                if r is None:  # no VM at all (a scaler at zero): refused, as the pool does
                    self._reject(lane, i, counts)
                    continue
                if second and n and self._misses(lane, ten, r, t, tick_at, per, slow, fn_key):
                    counts[1 if burst(lane, i, t, ten) else 2] += 1  # (the replica misses)
                    continue
                vm.enqueue(r, lane.m, i)
                counts[0] += 1
                if lane.learnt is not None:
                    lane.learnt.raw_ms[i] = lane.unscale(decision.predicted_ms or 0.0)
            elif where is BURST:
                counts[1 if burst(lane, i, t, ten) else 2] += 1
            else:
                self._reject(lane, i, counts)
        return max(arr[-1], next_tick) if arr else 0.0

    def _misses(self, lane, ten: int, r, t: float, *snap) -> bool:
        """Whether replica ``r`` answers too late at ``t`` while functions meet the SLO
        (``replica_misses``); ``snap``: ``_route_state``'s arguments."""
        request = lane.requests[ten]
        budget = self._budgets.get((lane.m, ten))  # (pure in the request: the policy's budget)
        if budget is None:
            budget = self._budgets[lane.m, ten] = self.s.routing.budget_ms(request)
        ms = answer_at(r, lane.m, self.vm.works, t, request.batch_size)
        if ms <= budget:
            return False
        state = self._route_state(*snap[:3], lane, snap[3])
        return self.s.routing.replica_misses(request, state, ms) is not None

    def _slow_key(self, t: float) -> tuple:
        """What replicas booting or draining add to a snapshot: (booting, draining, the boot
        wait, the rows waiting on them)."""
        booting, draining = self.vm.booting, self.vm.draining
        waiting = 0
        for r in booting:
            waiting += r.qn
        for r in draining:
            waiting += r.outstanding(t)
        left = round(max(booting[0].ready_s - t, 0.0), 1) if booting else 0.0
        return (len(booting), len(draining), left, waiting)

    def _reject(self, lane, i: int, counts: list) -> None:
        self.lat[i] = math.inf
        self.path[i] = PATH_REJECT
        lane.rejected += 1
        counts[2] += 1
