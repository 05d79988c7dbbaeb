"""One model's part of a shared-fleet simulation (``shared.py``): its profile, its function pool
(its own plan and SLO), its tenants' requests and the statistics the gateway's collector keeps
for it (arrival rates, latency quantiles, the error budget, the learnt VM prediction factors).

A lane quacks like the single-model ``Simulation`` where ``burst_path.burst`` reads one (the
request's latency and path lists are the whole trace's, shared by every lane).
"""

from __future__ import annotations

from bisect import bisect_left

import numpy as np

from policies.routing.error_budget import MissWindow
from policies.state import ModelStats, RouteRequest

from .engine import LATENCY_WINDOW_TICKS, LONG_WINDOW_S, QUANTILE_EVERY_TICKS, SHORT_WINDOW_S
from .functions import FunctionPool
from .optimum import function_cost_per_request
from .snap import predicts_vm
from .snap import quantiles as _quantiles
from .vm_error import PredictionFactor


class _LaneVm:
    """What ``burst_path`` reads of ``sim.vm``: the model's gateway overhead, busy replicas."""

    def __init__(self, pool, overhead_ms: float):
        self.pool, self.overhead_ms = pool, overhead_ms

    def serving(self, now_s: float) -> int:
        return self.pool.serving(now_s)


class PlatformPool(FunctionPool):
    """A model's function pool on the gateway's one function platform: its concurrency cap
    (``fn_concurrency`` instances, one slot per plan worker) is the platform's, less the
    instances the other models' requests hold (``peers``: every model's pool). A model holding
    no instance may start one group even when the others hold every slot (the gateway's gate
    would queue it for the next slot freed; this admits it at once, one group over the cap at
    most per model). Instances are not lent between models (each keeps its own warm ones)."""

    peers: list

    @property  # type: ignore[override]
    def cap_groups(self) -> int:
        used = 0
        for other in self.peers:
            if other is not self:
                used += len(other.busy) * other.slots
        free = (self.platform_slots - used) // self.slots
        return free if free > 0 or self.busy else 1

    @cap_groups.setter
    def cap_groups(self, _groups: int) -> None:  # (FunctionPool.__init__ sets it)
        self.slots = max(self.k, self.p.burst_workers)
        self.platform_slots = max(self.p.fn_concurrency, self.slots)
        self.peers = [self]


class Lane:
    def __init__(self, m: int, sim, profile, setup):
        self.m, self.p = m, profile
        self.model = profile.model
        trace = sim.trace
        self.arr, self.arr_np, self.tenant_of = sim.arr, sim.arr_np, sim.tenant_of
        self.lat, self.path = sim.lat, sim.path
        self.own_arr = trace.arrivals_s[trace.model_idx == m].tolist()  # its rate windows
        self.vm = _LaneVm(sim.vm, profile.gateway_overhead_ms)
        n_tenants = len(trace.tenants)
        self.fn = PlatformPool(
            profile, setup.seed + 1 + 7919 * m, profile.burst_quantile_ms(setup.slo_percentile)
        )
        self.fn_billed_by_tenant = [0.0] * n_tenants
        self.fn_requests_by_tenant = [0] * n_tenants
        self.requests = [
            RouteRequest(
                tenant=t,
                model=profile.model,
                batch_size=1,
                slo_ms=setup.slo_ms_by_tenant.get(t, profile.slo_ms),
                slo_percentile=setup.slo_percentile,
            )
            for t in trace.tenants
        ]
        self.rejected = 0
        self._tick_slo = [0, 0]
        self._tick_burst: list[float] = []
        self._slo_window = MissWindow(getattr(setup.routing, "budget_window_s", 3600.0))
        self._lat_ring: list = []
        self._n_ticks = 0
        self._window_idx = (0, 0, 0)
        self._q = (None, None, None)
        self._burst_predicted_ms = profile.burst_quantile_ms(setup.slo_percentile)
        self._burst_usd = function_cost_per_request(profile, setup.prices, check_slo=False)[0]
        self.learnt = (
            PredictionFactor(sim.arr, sim.arr_np, sim.lat, profile, setup.routing.budget_quantile)
            if predicts_vm(setup.routing)
            else None
        )
        self.stats = ModelStats(slo_ms=profile.slo_ms)
        self.warm_cost_usd = 0.0
        self.unscaled: dict[float, float] = {}  # published -> raw prediction, this tick

    def refresh(self, now_s: float, observed: list, observed_idle: list) -> ModelStats:
        """The model's statistics at a tick, as ``Simulation._refresh_stats`` makes them."""
        a, (hi, lo_s, lo_l) = self.own_arr, self._window_idx
        hi = bisect_left(a, now_s, hi)
        lo_s = bisect_left(a, now_s - SHORT_WINDOW_S, lo_s)
        lo_l = bisect_left(a, now_s - LONG_WINDOW_S, lo_l)
        self._window_idx = (hi, lo_s, lo_l)
        short, long_ = (hi - lo_s) / SHORT_WINDOW_S, (hi - lo_l) / LONG_WINDOW_S
        seen = np.asarray(observed)
        self._lat_ring.append((seen, np.asarray(observed_idle), np.asarray(self._tick_burst)))
        slo = self._tick_slo
        missed = int(np.count_nonzero(seen > self.p.slo_ms)) + slo[1]
        self._slo_window.add(now_s, seen.size + slo[0], missed)
        answered, missed = self._slo_window.counts(now_s)
        self._tick_burst, self._tick_slo = [], [0, 0]
        if len(self._lat_ring) > LATENCY_WINDOW_TICKS:
            self._lat_ring.pop(0)
        self._n_ticks += 1
        factors = self.learnt.table if self.learnt else None
        if self._n_ticks % QUANTILE_EVERY_TICKS == 1 or QUANTILE_EVERY_TICKS == 1:
            factors = self.learnt.update(now_s) if self.learnt else None
            self._q = tuple(_quantiles([r[k] for r in self._lat_ring]) for k in range(3))
        self.stats = ModelStats(
            arrival_rate_short_per_s=float(short),
            arrival_rate_long_per_s=float(long_),
            vm_service_ms_by_batch=self.p.vm_service_ms_by_batch,
            vm_latency=self._q[0],
            vm_service_latency=self._q[1],
            burst_latency=self._q[2],
            burst_predicted_ms=self._burst_predicted_ms,
            burst_usd=self._burst_usd,
            vm_prediction_factors=factors,
            vm_budget_factors=self.learnt.budget_table if self.learnt else None,
            slo_ms=self.p.slo_ms,
            slo_answered=answered,
            slo_missed=missed,
        )
        return self.stats

    def unscale(self, predicted_ms: float) -> float:
        """The raw VM prediction behind a published one (the tick's learnt table; memoised
        within the tick: decisions, so their predictions, repeat)."""
        table = self.stats.vm_prediction_factors
        if table is None or not predicted_ms:
            return predicted_ms or 0.0
        raw = self.unscaled.get(predicted_ms)
        if raw is None:
            raw = self.unscaled[predicted_ms] = table.raw_of(predicted_ms)
        return raw

    def burst_key(self) -> tuple:
        fn = self.fn
        return (len(fn.busy), len(fn.request_ends), fn.warm_groups(), fn.recent_cold)
