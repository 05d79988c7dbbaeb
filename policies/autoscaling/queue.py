"""``queue``: KEDA-style scaling on the async queue's length, beside in-flight requests.

desired = ceil(queue depth / ``target_per_replica``), as KEDA's queue scalers feed the HPA; an
``activation_depth`` below which the queue asks for nothing (KEDA's activation threshold: a
trickle of jobs does not wake a VM); with ``target_in_flight_per_replica`` set, a second trigger
on in-flight requests, and the larger of the two wins (the HPA takes the largest metric).
Scale-out is immediate; scale-in waits ``cooldown_s`` after the last change (KEDA's
cooldownPeriod), so a queue drained by the VMs it asked for does not give them back at once.
With ``warm_functions``, that many function instances are kept warm while the queue is active:
async work fills the VMs then, so an interactive request that spills meets a warm instance,
not a cold start (async_step: spills started cold during the step took 10-12 s, past the SLO).
"""

from __future__ import annotations

import math

from ..costs import PriceTable, warm_instances_cost_usd
from ..state import LiveState
from .base import ScaleDecision, ScalerBase, current_replicas, in_flight


class QueueLength(ScalerBase):
    name = "queue"

    def __init__(
        self,
        target_per_replica: float = 20.0,
        activation_depth: int = 0,
        target_in_flight_per_replica: float = 0.0,
        cooldown_s: float = 300.0,
        min_replicas: int = 0,
        max_replicas: int = 8,
        warm_functions: int = 0,
        prices: PriceTable | None = None,
    ):
        super().__init__(min_replicas, max_replicas)
        if warm_functions < 0:
            raise ValueError("need warm_functions >= 0")
        self.warm_functions = warm_functions
        self.prices = prices or PriceTable()
        if target_per_replica <= 0 or activation_depth < 0 or target_in_flight_per_replica < 0:
            raise ValueError(
                "need target_per_replica > 0, activation_depth >= 0 and "
                "target_in_flight_per_replica >= 0 (0: no in-flight trigger)"
            )
        self.target_per_replica = target_per_replica
        self.activation_depth = activation_depth
        self.target_in_flight = target_in_flight_per_replica
        self.cooldown_s = cooldown_s
        self._current: int | None = None
        self._last_change_s: float | None = None

    def _wanted(self, state: LiveState) -> tuple[float, str]:
        queued = state.queue.depth + state.queue.running
        by_queue = 0.0
        if queued > self.activation_depth:
            by_queue = math.ceil(queued / self.target_per_replica)
        by_flight = 0.0
        if self.target_in_flight > 0:
            by_flight = math.ceil(in_flight(state) / self.target_in_flight)
        if by_flight > by_queue:
            return by_flight, "in-flight trigger"
        return by_queue, "queue trigger" if by_queue else "queue under activation"

    def decide(self, state: LiveState) -> ScaleDecision:
        current = self._current if self._current is not None else current_replicas(state)
        raw, trigger = self._wanted(state)
        want = self.clamp(raw)
        reason = f"steady ({trigger})"
        if want > current:
            reason = f"scale out: {trigger}"
        elif want < current:
            cooled = self._last_change_s is None or state.now_s - self._last_change_s >= (
                self.cooldown_s
            )
            if cooled:
                reason = f"scale in: {trigger}"
            else:
                want, reason = current, "cooldown"
        want = self.clamp(want)
        if want != current:
            self._last_change_s = state.now_s
        self._current = want
        queued = state.queue.depth + state.queue.running
        warm = self.warm_functions if queued > self.activation_depth else 0
        cost = warm_instances_cost_usd(self.prices, warm, state.burst.memory_mb, 1.0)
        return ScaleDecision(want, reason, warm, cost)
