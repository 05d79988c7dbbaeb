"""What the predictive scaler takes a spilled request to cost, and the burst latency it prices it
by: the functions' observed median, else the plan's prediction, unless the operator set one."""

from __future__ import annotations

from ..costs import PriceTable, billed_ms, function_cost_usd
from ..state import LiveState, ModelStats
from .base import functions_meet_slo

DEFAULT_BURST_LATENCY_S = 0.5  # before any burst answer or plan prediction is known


def model_burst_ms(stats: ModelStats, fixed_s: float | None) -> float | None:
    """A model's burst latency: as set, else observed (5 answers or more), else predicted."""
    if fixed_s is not None:
        return fixed_s * 1e3
    if stats.burst_latency is not None and stats.burst_latency.count >= 5:
        return stats.burst_latency.p50_ms
    return stats.burst_predicted_ms


def burst_latency_s(state: LiveState, fixed_s: float | None) -> float:
    """As set, else the slowest model's (observed median, else plan's prediction), or 0.5 s."""
    if fixed_s is not None:
        return fixed_s
    known = [ms for s in state.models.values() if (ms := model_burst_ms(s, None)) is not None]
    return max(known) / 1e3 if known else DEFAULT_BURST_LATENCY_S


def request_usd(
    state: LiveState, prices: PriceTable, fixed_s: float | None, instances: int | None
) -> float:
    """A spilled request's bill for its latency, or its plan's price (``burst_usd``: store
    requests too) if more; x100 when every model's misses its SLO: any VM taking it pays."""
    latency_s = burst_latency_s(state, fixed_s)
    instances = instances or max(state.burst.default_workers, 1)
    invocation = (billed_ms(prices, latency_s * 1e3), state.burst.memory_mb)
    usd = function_cost_usd(prices, [invocation] * instances)
    usd = max([usd, *(s.burst_usd for s in state.models.values() if s.burst_usd)])
    misses = [(model_burst_ms(s, fixed_s) or 0.0) > s.slo_ms for s in state.models.values()]
    return usd * 100.0 if misses and all(misses) else usd


def break_even_rate(prices: PriceTable, spill_usd: float) -> float:
    """The arrival rate whose spill costs as much as a VM (requests a second)."""
    return prices.vm_usd_per_hour / 3600 / max(spill_usd, 1e-12)


def first_vm_pays(state: LiveState, rate: float, spill_usd: float, prices: PriceTable) -> bool:
    """Whether ``rate`` spilled would cost more than a first VM (a small model's functions can
    be cheaper than a VM all the time: ``mlp`` at 30 req/s). Where the functions miss the SLO
    (or are not known yet) a VM always pays."""
    return not functions_meet_slo(state) or rate >= break_even_rate(prices, spill_usd)
