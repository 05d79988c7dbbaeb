"""The error budget's inputs, as the collector measures them for SLO-aware routing.

Routing (``policies.routing.error_budget``) may judge the VM at a lower quantile while the
answers of the last window leave room under the SLO's miss budget. It needs two things live: the
answers and misses of the window, and the VM prediction calibrated at that quantile (the same
raw predictions and observed latencies the p99 factor is learnt from, ``vm_error``). Both are
the routing policy's own parameters: the policy engine hands them over whenever it builds a
policy (``budget_params``), so a configured or tuned window and quantile are the ones measured.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from policies.routing.error_budget import DEFAULT_WINDOW_S, MissWindow
from policies.routing.slo_aware import SloAware

from .vm_error import PredictionError

# at or above it the budget relaxes nothing (routing judges at p99): no factor table is learnt
NO_RELAXATION_QUANTILE = 0.99


def budget_params(policy: object) -> tuple[float, float]:
    """``(quantile, window_s)`` of a routing policy's error budget; a policy without one gets
    no relaxation (and the default window, so answers are still counted)."""
    if isinstance(policy, SloAware):
        return policy.budget_quantile, policy.budget_window_s
    return NO_RELAXATION_QUANTILE, DEFAULT_WINDOW_S


@dataclass
class SloBudget:
    quantile: float = NO_RELAXATION_QUANTILE
    window: MissWindow = field(default_factory=lambda: MissWindow(DEFAULT_WINDOW_S))

    def configure(self, quantile: float, window_s: float) -> None:
        """Measure for another policy: the answers kept stay counted while inside the new
        window (a longer one fills up from now on)."""
        self.quantile, self.window.window_s = quantile, window_s

    def on_answer(self, now_s: float, latency_ms: float, slo_ms: float) -> None:
        self.window.add(now_s, 1, int(latency_ms > slo_ms))

    def stats(self, now_s: float, vm_error: PredictionError, slo_ms: float) -> dict:
        """``ModelStats`` fields: the window's counts and the calibrated factors."""
        answered, missed = self.window.counts(now_s)
        relaxes = self.quantile < NO_RELAXATION_QUANTILE
        factors = vm_error.table(now_s, slo_ms, self.quantile) if relaxes else None
        return {"slo_answered": answered, "slo_missed": missed, "vm_budget_factors": factors}
