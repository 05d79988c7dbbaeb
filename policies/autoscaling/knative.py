"""Knative's KPA: a stable window (60 s) and a panic window (6 s); panic when the panic window
asks for 200 % of the ready replicas, and never scale down while panicking."""

from __future__ import annotations

from ..state import LiveState
from .base import ScaleDecision, ScalerBase, Window, current_replicas, in_flight


class Knative(ScalerBase):
    name = "knative"

    def __init__(
        self,
        target_in_flight_per_replica: float = 4.0,
        stable_window_s: float = 60.0,
        panic_window_s: float = 6.0,
        panic_threshold: float = 2.0,
        max_scale_up_rate: float = 1000.0,
        min_replicas: int = 0,
        max_replicas: int = 8,
    ):
        super().__init__(min_replicas, max_replicas)
        if target_in_flight_per_replica <= 0 or not 0 < panic_window_s <= stable_window_s:
            raise ValueError("need target > 0 and 0 < panic_window_s <= stable_window_s")
        self.target = target_in_flight_per_replica
        self.stable_window_s = stable_window_s
        self.panic_threshold = panic_threshold
        self.max_scale_up_rate = max_scale_up_rate
        self._stable = Window(stable_window_s)
        self._panic = Window(panic_window_s)
        self._panic_since_s: float | None = None
        self._panic_desired = 0

    @property
    def panicking(self) -> bool:
        return self._panic_since_s is not None

    def decide(self, state: LiveState) -> ScaleDecision:
        now, demand = state.now_s, in_flight(state)
        self._stable.add(now, demand)
        self._panic.add(now, demand)
        ready = max(state.vm.ready_replicas, 1)
        stable_want = self._stable.mean() / self.target
        panic_want = self._panic.mean() / self.target
        cap = ready * self.max_scale_up_rate
        stable_want, panic_want = min(stable_want, cap), min(panic_want, cap)
        if panic_want / ready >= self.panic_threshold:
            if self._panic_since_s is None:
                self._panic_desired = current_replicas(state)
            # (re)armed: panic lasts a stable window past the last trigger
            self._panic_since_s = now
        elif self._panic_since_s is not None and now - self._panic_since_s >= self.stable_window_s:
            self._panic_since_s = None
        if self.panicking:
            # in panic, follow the short window up but never scale down
            self._panic_desired = max(
                self._panic_desired, self.clamp(panic_want), self.clamp(stable_want)
            )
            return ScaleDecision(self._panic_desired, "panic")
        return ScaleDecision(self.clamp(stable_want), "stable")
