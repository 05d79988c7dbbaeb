"""What the offline optimum charges a request on functions, and what one run's draws may save.

Two ways the bound was not one (found by tests/ops/test_siminv_optimum.py):
- functions whose p99 misses the SLO were charged ``inf`` (never on time), yet at a 170 ms SLO
  98.5 % of warm answers (p50 110 ms, sigma 0.2) are on time: a VM up for one burst and
  functions for the rest met 99 % at $0.0052 where the "bound" was $0.0283 (one VM all along).
  A request on functions is on time with probability ``q``, so an on-time answer costs
  ``fn / q`` (``q`` = 1 where the p99 meets the SLO too): valid in the Lagrangian, where a late
  request costs the multiplier ``mu`` and a spilled one ``fn + (1 - q) mu`` >= ``min(mu, fn/q)``.
- functions were charged their mean warm duration, but a run draws its durations: one request
  that drew 0.62 x the mean cost less than the bound (burst-only, 1 request, SLO 3 s). With
  hindsight the draws are known (the function pool takes them in order from its seed), so what
  the first ``m`` spills cost and how many of them are on time are known for every ``m``; the
  most any ``m`` falls short of the linear price (``slack_usd``) is taken off the bound.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

POOL = 65536  # the function pool's draws (``FunctionPool.samples``), taken in a cycle from 1


def on_time_share(profile) -> float:
    """P(a warm function answer plus the gateway's overhead is within the SLO)."""
    budget_ms = profile.slo_ms - profile.gateway_overhead_ms
    if budget_ms <= 0:
        return 0.0
    if profile.burst_sigma <= 0:
        return 1.0 if profile.burst_p50_ms <= budget_ms else 0.0
    return NormalDist().cdf(math.log(budget_ms / profile.burst_p50_ms) / profile.burst_sigma)


def fixed_usd(profile, prices) -> float:
    """A burst request's fees beyond its GB-s: invocations and its plan's store requests."""
    puts, gets = profile.burst_store_ops
    return (
        profile.burst_instances * prices.fn_usd_per_request
        + puts * prices.store_put_usd
        + gets * prices.store_get_usd
    )


def usd_per_run_ms(profile, prices) -> float:
    """What a warm run's drawn ms bills in GB-s (its billed ms scale with its run's)."""
    billed_per_run = profile.burst_billed_ms / max(profile.burst_p50_ms, 1e-9)
    return billed_per_run / 1000.0 * profile.burst_memory_mb / 1024.0 * prices.fn_usd_per_gb_s


def spill_usd(profile, prices, mean_usd: float) -> float:
    """An on-time answer on functions: ``mean_usd / q`` (inf where none is on time); ``q`` is
    taken as 1 where the p99 is on time (what the bound charged before: nothing tighter)."""
    q = on_time_share(profile)
    if q <= 0.0:
        return math.inf
    return mean_usd if q >= 0.99 else mean_usd / q


class DrawSlack:
    """``slack_usd(mu)``: how far below ``m x spill(mu)`` the first ``m`` spills of a run with
    ``seed`` may come, for any ``m <= requests``: ``K_F + mu K_G`` with ``K_F`` the most the
    drawn bills fall short of ``m`` mean bills and ``K_G`` the most their on-time count exceeds
    ``q m``. Zero for ``mu`` where functions are never used (inf)."""

    def __init__(self, profile, prices, requests: int, seed: int, mean_usd: float):
        runs = np.roll(profile.burst_samples_ms(POOL, seed + 1), -1)  # the pool's seed
        bill = fixed_usd(profile, prices) + runs * usd_per_run_ms(profile, prices)
        q = on_time_share(profile)
        q = 1.0 if q >= 0.99 else q  # (the price's own rounding: ``spill_usd``)
        on_time = (runs + profile.gateway_overhead_ms <= profile.slo_ms).astype(np.float64)
        self.short_usd = _most_below(mean_usd - bill, requests)
        self.extra_on_time = _most_below(on_time - q, requests)

    def slack_usd(self, mu: float) -> float:
        if not math.isfinite(mu):
            return self.short_usd
        return self.short_usd + max(mu, 0.0) * self.extra_on_time


def _most_below(step: np.ndarray, n: int) -> float:
    """``max(0, max over m <= n of step[0] + ... + step[m-1])``, the steps taken cyclically."""
    if n <= 0:
        return 0.0
    prefix = np.concatenate([[0.0], np.cumsum(step)])  # prefix[r], r = 0..POOL
    cycle = float(prefix[-1])
    r = np.arange(min(n, POOL) + 1)
    cycles = (n - r) // POOL  # the most whole cycles before a remainder r
    best = np.maximum(prefix[r], prefix[r] + cycles * cycle)
    return max(float(best.max()), 0.0)
