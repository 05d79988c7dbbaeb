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
    state: LiveState,
    prices: PriceTable,
    fixed_s: float | None,
    instances: int | None,
    *,
    seen_misses: bool = True,
) -> float:
    """A spilled request's bill for its latency, or its plan's price (``burst_usd``: store
    requests too) if more; x100 when every model's misses its SLO: any VM taking it pays.
    ``seen_misses`` False: a miss only the observed latency shows (not the latency set, nor
    the plan's prediction) does not count (``SpillPrice``)."""
    latency_s = burst_latency_s(state, fixed_s)
    instances = instances or max(state.burst.default_workers, 1)
    invocation = (billed_ms(prices, latency_s * 1e3), state.burst.memory_mb)
    usd = function_cost_usd(prices, [invocation] * instances)
    usd = max([usd, *(s.burst_usd for s in state.models.values() if s.burst_usd)])
    return usd * 100.0 if all_miss(state, fixed_s, seen_misses) else usd


def all_miss(state: LiveState, fixed_s: float | None, seen_misses: bool = True) -> bool:
    """Whether every model's functions miss its SLO (at their median)."""
    return bool(state.models) and all(
        _misses(s, fixed_s, seen_misses) for s in state.models.values()
    )


def _misses(stats: ModelStats, fixed_s: float | None, seen_misses: bool) -> bool:
    if (model_burst_ms(stats, fixed_s) or 0.0) <= stats.slo_ms:
        return False
    predicted = stats.burst_predicted_ms
    return seen_misses or fixed_s is not None or (predicted or 0.0) > stats.slo_ms


class SpillPrice:
    """``request_usd`` for a scaler, which counts a miss only the observed latency shows once
    every model's functions have missed for a VM's boot (``state.vm.boot_s``).

    A spill priced x100 makes any VM that would take it pay, so functions seen late for a few
    seconds booted VMs: on a host loaded by other work (session 25's run 4) both delay models'
    warm functions answered over their 250 ms SLO for 12 ticks (p50 up to 556 ms, ~72 after)
    and the scaler booted a 2nd and a 3rd VM that came up 20 and 27 s after the spell ended. A VM asked for now serves from a boot on, and a spell that has lasted t is as
    likely as not to last about t more: it pays against a spell that has outlasted a boot.
    Functions that are slow for good (as the plan predicts, or as set, or seen for a boot)
    are priced x100 as before."""

    def __init__(self, prices: PriceTable, fixed_s: float | None, instances: int | None):
        self.prices, self.fixed_s, self.instances = prices, fixed_s, instances
        self._since_s: float | None = None  # every model's functions seen late since then

    def observe(self, state: LiveState) -> None:
        """Once a tick, before ``usd``."""
        if not all_miss(state, self.fixed_s):
            self._since_s = None
        elif self._since_s is None:
            self._since_s = state.now_s

    def usd(self, state: LiveState) -> float:
        since_s = self._since_s
        lasted = since_s is not None and state.now_s - since_s >= state.vm.boot_s
        return request_usd(state, self.prices, self.fixed_s, self.instances, seen_misses=lasted)


def break_even_rate(prices: PriceTable, spill_usd: float) -> float:
    """The arrival rate whose spill costs as much as a VM (requests a second)."""
    return prices.vm_usd_per_hour / 3600 / max(spill_usd, 1e-12)


def first_vm_pays(state: LiveState, rate: float, spill_usd: float, prices: PriceTable) -> bool:
    """Whether ``rate`` spilled would cost more than a first VM (a small model's functions can
    be cheaper than a VM all the time: ``mlp`` at 30 req/s). Where the functions miss the SLO
    (or are not known yet) a VM always pays."""
    return not functions_meet_slo(state) or rate >= break_even_rate(prices, spill_usd)
