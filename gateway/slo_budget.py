"""The error budget's inputs, as the collector measures them for SLO-aware routing.

Routing (``policies.routing.error_budget``) may judge the VM at a lower quantile while the
answers of the last hour leave room under the SLO's miss budget. It needs two things live: the
answers and misses of the window, and the VM prediction calibrated at that quantile (the same
raw predictions and observed latencies the p99 factor is learnt from, ``vm_error``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from policies.routing.error_budget import MissWindow
from policies.routing.slo_aware import SloAware

from .vm_error import PredictionError

_POLICY = SloAware()  # the gateway builds slo-aware routing with these defaults


@dataclass
class SloBudget:
    quantile: float = _POLICY.budget_quantile
    window: MissWindow = field(default_factory=lambda: MissWindow(_POLICY.budget_window_s))

    def on_answer(self, now_s: float, latency_ms: float, slo_ms: float) -> None:
        self.window.add(now_s, 1, int(latency_ms > slo_ms))

    def stats(self, now_s: float, vm_error: PredictionError, slo_ms: float) -> dict:
        """``ModelStats`` fields: the window's counts and the calibrated factors."""
        answered, missed = self.window.counts(now_s)
        factors = vm_error.table(now_s, slo_ms, self.quantile) if self.quantile < 0.99 else None
        return {"slo_answered": answered, "slo_missed": missed, "vm_budget_factors": factors}
