"""``none`` (a fixed count) and ``target`` (target tracking on in-flight requests per replica,
as SageMaker's target-tracking policy on ConcurrentRequestsPerModel)."""

from __future__ import annotations

from ..state import LiveState
from .base import ScaleDecision, ScalerBase, Window, current_replicas, in_flight


class FixedScaler(ScalerBase):
    name = "none"

    def __init__(self, replicas: int = 1, min_replicas: int = 0, max_replicas: int = 8):
        super().__init__(min_replicas, max_replicas)
        self.replicas = replicas

    def decide(self, state: LiveState) -> ScaleDecision:
        return ScaleDecision(self.clamp(self.replicas), "fixed")


class TargetTracking(ScalerBase):
    """desired = ceil(mean metric over ``metric_window_s`` / target per replica), the metric being
    in-flight requests, or with ``target_rps_per_replica`` the arrival rate (SageMaker's
    InvocationsPerInstance: a batching server's in-flight count hardly grows with its load until
    it saturates, so a rate is the steadier signal for one). Scale-out is immediate; scale-in
    waits ``scale_in_cooldown_s`` after any change, so a dip does not give back VMs that the next
    minute needs (and that are billed a minute anyway)."""

    name = "target"

    def __init__(
        self,
        target_in_flight_per_replica: float = 4.0,
        metric_window_s: float = 10.0,
        scale_in_cooldown_s: float = 60.0,
        min_replicas: int = 0,
        max_replicas: int = 8,
        target_rps_per_replica: float | None = None,
    ):
        super().__init__(min_replicas, max_replicas)
        if target_in_flight_per_replica <= 0:
            raise ValueError("target_in_flight_per_replica must be > 0")
        if target_rps_per_replica is not None and not target_rps_per_replica > 0:
            raise ValueError("target_rps_per_replica must be > 0")
        self.by_rate = target_rps_per_replica is not None
        self.target: float = (
            target_rps_per_replica
            if target_rps_per_replica is not None
            else target_in_flight_per_replica
        )
        self.scale_in_cooldown_s = scale_in_cooldown_s
        self._window = Window(metric_window_s)
        self._last_change_s: float | None = None
        self._current: int | None = None

    def decide(self, state: LiveState) -> ScaleDecision:
        metric = state.arrival_rate_short_per_s if self.by_rate else in_flight(state)
        self._window.add(state.now_s, metric)
        current = self._current if self._current is not None else current_replicas(state)
        want = self.clamp(self._window.mean() / self.target)
        what = "request rate" if self.by_rate else "in-flight"
        reason = "steady"
        if want > current:
            reason = f"scale out: {what} over target"
        elif want < current:
            cooled = (
                self._last_change_s is None
                or state.now_s - self._last_change_s >= self.scale_in_cooldown_s
            )
            if cooled:
                reason = f"scale in: {what} under target"
            else:
                want, reason = current, "scale-in cooldown"
        want = self.clamp(want)
        if want != current:
            self._last_change_s = state.now_s
        self._current = want
        return ScaleDecision(want, reason)
