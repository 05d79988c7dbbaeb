"""The rate one replica serves within the model's SLO, not only at full batches.

A replica's full-batch capacity (``max_batch_size`` rows per batch time) is what it serves with
a queue always waiting; its p99 latency there is several batch times. When the SLO is that long
(ResNet-18 at 300 ms: full batches take 55 ms) the scaler can size the fleet at a fixed share of
it; when the SLO is a few batch-1 times (ResNet-50 at 62 ms: 21 ms at batch 1, 142 ms at 8),
that fleet misses the SLO on most requests. Measured on the simulator's replica (session 21,
two replicas at a steady Poisson rate, p99 ms at 0.3 / 0.45 / 0.6 / 0.75 / 0.9 of full
capacity): resnet50 51 / 67 / 99 / 174 / 328, mobilenet_v2 21 / 27 / 34 / 45 / 70, resnet18
31 / 39 / 54 / 78 / 142, vgg16 166 / 250 / 331 / 466 / 743, wide_resnet50_2 149 / 190 / 263 /
385 / 652. Where a full batch alone takes longer than the SLO's budget, full batches are no
capacity at all, and the replica must be sized where it serves small batches:
``s1 * (2 + rho / (1 - rho))``, ``rho`` = rate x batch-1 time (the running batch, its own, and
the M/D/1-like wait behind others), follows that p99 while batches stay small (resnet50 at
0.3 / 0.45 / 0.6 / 0.75 of full capacity: 54 / 66 / 93 / 205 ms for 51 / 67 / 99 / 174
measured) and over-estimates it once batching helps (mobilenet_v2 at 0.3: 26 for 21 ms): the
rate it gives is on the safe side. Between one and about 2.5 full batches the p99 at 0.9 of full capacity can exceed the SLO
too (resnet18 at 80 ms); a bound for that band (``sB * (1 + 0.35 * u / (1 - u))``) sized
ResNet-18 at an 80 ms SLO at 69 req/s where 105 meet it, dearer than VMs for the peak
(tests/ops/test_sim_tight_slo.py), and is not used.
"""

from __future__ import annotations

from ..state import ModelStats
from ..vm_perf import batch_service_ms

SLO_MARGIN = 0.9  # the share of the SLO a path may predict (routing's ``DEFAULT_SLO_MARGIN``)
ONE_ROW_WAIT = 1.0  # queueing at batches of one, per rho / (1 - rho), in batch-1 times


def slo_rate_per_s(stats: ModelStats, max_batch_size: int, margin: float = SLO_MARGIN) -> float:
    """Rows per second one replica serves with its p99 within ``margin`` of ``stats.slo_ms``
    when a full batch alone takes longer than that (small batches only, the first regime);
    0 when full batches fit in it (their capacity holds) or not even a lone request does."""
    budget_ms = stats.slo_ms * margin
    curve, cap = stats.vm_service_ms_by_batch, max(max_batch_size, 1)
    one_ms, full_ms = batch_service_ms(curve, 1), batch_service_ms(curve, cap)
    spare = (budget_ms / one_ms - 2.0) / ONE_ROW_WAIT  # rho / (1 - rho) at most this
    if full_ms <= budget_ms or spare <= 0:
        return 0.0
    return min(spare / (1.0 + spare) / one_ms * 1e3, cap / full_ms * 1e3)


def sizing_rate_per_s(stats: ModelStats, max_batch_size: int, utilization: float) -> float:
    """What the scaler sizes a replica at: ``utilization`` of its full-batch capacity, or, where
    a full batch takes longer than the SLO, the rate it serves within it in small batches (if
    a lone request meets it at all)."""
    full_ms = batch_service_ms(stats.vm_service_ms_by_batch, max(max_batch_size, 1))
    sized = max(max_batch_size, 1) / full_ms * 1e3 * utilization
    within = slo_rate_per_s(stats, max_batch_size)
    return min(sized, within) if within > 0 else sized


def fleet_sizing_rate_per_s(
    models: list[ModelStats], max_batch_size: int, utilization: float
) -> float:
    """``sizing_rate_per_s`` of one fleet serving ``models``: each model's rows take 1 / its
    rate of a replica-second, so the fleet's rate is their arrival rates' mix (the slowest
    model's for all sized mlp's 1,000 req/s at VGG-16's 15 a replica); the slowest model's
    while none arrives."""
    caps = [
        (s.arrival_rate_short_per_s, sizing_rate_per_s(s, max_batch_size, utilization))
        for s in models
    ]
    if len(caps) == 1:
        return caps[0][1]
    busy = sum(rate / cap for rate, cap in caps)
    if busy > 0:
        return sum(rate for rate, _ in caps) / busy
    return min(cap for _, cap in caps)
