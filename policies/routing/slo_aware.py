"""SLO-aware routing: the cheapest path whose predicted latency at the SLO's percentile meets the
request's SLO; if none does, the fastest; a rejection only when no path can serve at all."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..costs import PriceTable, burst_request_cost_usd, vm_request_cost_usd
from ..state import BurstState, LiveState, ModelStats, RouteRequest
from ..vm_perf import batch_service_ms, predict_vm_ms
from .base import Decision, Reason, Route, forced

DEFAULT_BURST_MS = 400.0  # before any burst request was seen and without a plan prediction
MIN_BURST_SAMPLES = 5


def predict_burst_ms(
    burst: BurstState, stats: ModelStats, workers: int, quantile: float = 0.99
) -> float:
    """Predicted burst-path latency at ``quantile``: the plan's prediction (warm), else the
    observed latencies, else a default; plus a cold start when the idle warm instances cannot
    cover the request (unknown warm pool: assume cold)."""
    needed = workers + 1  # master and workers
    if burst.free_concurrency is not None and burst.free_concurrency < needed:
        return math.inf  # the platform would throttle it
    idle_warm = (
        None if burst.warm_instances is None else burst.warm_instances - burst.in_flight * needed
    )
    cold_ms = burst.cold_start_ms if idle_warm is None or idle_warm < needed else 0.0
    if stats.burst_predicted_ms is not None:
        return stats.burst_predicted_ms + cold_ms
    observed = stats.burst_latency
    if observed is not None and observed.count >= MIN_BURST_SAMPLES:
        # the observed tail already holds the cold starts that happened; add one only when
        # the warm pool is known to be short
        known_short = idle_warm is not None and idle_warm < needed
        return max(observed.at(quantile), observed.p50_ms + (cold_ms if known_short else 0.0))
    return DEFAULT_BURST_MS + cold_ms


@dataclass(frozen=True)
class SloAware:
    prices: PriceTable = field(default_factory=PriceTable)
    name: str = "slo-aware"

    def route(self, request: RouteRequest, state: LiveState) -> Decision:
        decision = forced(request, state)
        if decision:
            return decision
        stats = state.model(request.model)
        q = request.slo_percentile
        vm_ms = predict_vm_ms(state.vm, stats, request.batch_size, q)
        workers = request.workers or state.burst.default_workers
        burst_ms = (
            predict_burst_ms(state.burst, stats, workers, q) if state.burst_enabled else math.inf
        )
        if vm_ms == math.inf and burst_ms == math.inf:
            reason = Reason.NO_PATH if state.burst_enabled else Reason.NO_VM_READY
            return Decision(Route.REJECT, reason, retry_after_s=1.0)
        meets_vm, meets_burst = vm_ms <= request.slo_ms, burst_ms <= request.slo_ms
        if meets_vm and meets_burst:
            vm_cost = vm_request_cost_usd(
                self.prices,
                batch_service_ms(stats.vm_service_ms_by_batch, request.batch_size),
                request.batch_size,
            )
            burst_cost = burst_request_cost_usd(
                self.prices, burst_ms, workers, state.burst.memory_mb
            )
            meets_vm = vm_cost <= burst_cost
        if meets_vm:
            return self._vm(state, Reason.VM_MEETS_SLO, vm_ms)
        if meets_burst:
            return Decision(Route.BURST, Reason.BURST_MEETS_SLO, request.workers, burst_ms)
        if vm_ms <= burst_ms:
            return self._vm(state, Reason.FASTEST_VM, vm_ms)
        return Decision(Route.BURST, Reason.FASTEST_BURST, request.workers, burst_ms)

    @staticmethod
    def _vm(state: LiveState, reason: Reason, predicted_ms: float) -> Decision:
        if state.vm.ready_replicas == 0:  # the prediction already counts the boot wait
            return Decision(
                Route.VM,
                Reason.VM_BOOTING,
                None,
                predicted_ms,
                retry_after_s=max(state.vm.boot_remaining_s, 1.0),
            )
        return Decision(Route.VM, reason, None, predicted_ms)
