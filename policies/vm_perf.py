"""VM-path latency prediction: queueing plus batching, from the observed batch-time curve.

A replica serves one batch at a time, up to ``max_batch_size`` rows; a request that finds it
holding nothing starts at once (the model server waits ``max_queue_delay_ms`` only when other
requests could join the batch). A request that finds ``q`` rows on its
replica waits for the batch running now (``min(q, B)`` rows; at the SLO's percentile it has
barely started), then for the full batches behind it, then rides in a batch with the rows left
over. The queue is modelled explicitly, so the tail factor covers only what it does not see: the
spread of one batch's service time, measured on requests that found their replica idle (the
spread of all latencies would count queueing twice, and made slo-aware spill too early).
"""

from __future__ import annotations

import math

from .state import ModelStats, VmState
from .vm_factor import MAX_PREDICTION_FACTOR, MIN_PREDICTION_FACTOR

DEFAULT_BATCH_MS = 50.0  # before anything was observed: a mid-sized CNN on one VM core
DEFAULT_TAIL_FACTOR = 1.1  # service-time spread at p99 before any was measured
MAX_TAIL_FACTOR = 2.0
MIN_TAIL_SAMPLES = 20


def batch_service_ms(curve: tuple[tuple[int, float], ...], batch_size: int) -> float:
    """Service time of one batch of ``batch_size`` rows: interpolated on the observed curve,
    extrapolated linearly past its ends (one point: half fixed cost, half per row)."""
    if not curve:
        return DEFAULT_BATCH_MS
    if len(curve) == 1:
        b0, s0 = curve[0]
        return s0 * (0.5 + 0.5 * batch_size / b0)
    i = 1  # the segment holding batch_size; the first or last one to extrapolate
    while i < len(curve) - 1 and batch_size > curve[i][0]:
        i += 1
    (b0, s0), (b1, s1) = curve[i - 1], curve[i]
    slope = (s1 - s0) / (b1 - b0)
    return max(s0 + slope * (batch_size - b0), 0.1)


def replica_capacity_per_s(stats: ModelStats, max_batch_size: int) -> float:
    """Rows per second one replica serves at full batches."""
    return max_batch_size / batch_service_ms(stats.vm_service_ms_by_batch, max_batch_size) * 1e3


def _queued_rows(vm: VmState, quantile: float = 0.99) -> float:
    """Rows ahead of a new request at ``quantile`` of power-of-two choices' pick.

    The pool samples two distinct ready replicas and takes the less loaded one, so with the
    queues sorted ascending the pick is the ``i``-th with probability ``(n-1-i) / C(n, 2)``.
    The prediction is at the SLO's percentile, so the queue is too: the typical pick (a low
    quartile) let the VM path's p99 run 15-60 % over the prediction once several replicas
    were up (issue 8's step). With few replicas this is the second-longest queue."""
    per = sorted(vm.outstanding_per_replica)
    n = len(per)
    if n >= 2:
        pairs = n * (n - 1) / 2
        cumulative = 0.0
        for i, rows in enumerate(per[:-1]):
            cumulative += (n - 1 - i) / pairs
            if cumulative >= quantile - 1e-9:
                return rows
        return per[-2]
    if per:
        return per[0]
    return vm.outstanding / max(vm.ready_replicas, 1)


def tail_factor(stats: ModelStats, quantile: float) -> float:
    """Service-time spread at ``quantile`` (>= 1): the observed quantile over the median of
    requests served without queueing, else a default that grows towards the tail."""
    obs = stats.vm_service_latency
    if obs is None or obs.count < MIN_TAIL_SAMPLES or obs.p50_ms <= 0:
        return 1.0 + (DEFAULT_TAIL_FACTOR - 1.0) * min(max((quantile - 0.5) / 0.49, 0.0), 1.0)
    return min(max(obs.at(quantile) / obs.p50_ms, 1.0), MAX_TAIL_FACTOR)


def predict_vm_ms(vm: VmState, stats: ModelStats, batch_size: int, quantile: float = 0.99) -> float:
    """Predicted VM-path latency at ``quantile``; ``inf`` when no replica is ready or booting.
    Scaled by what the gateway learnt of its own errors: by regime when it has learnt them
    (``stats.vm_prediction_factors``, ``vm_factor``), else by one factor."""
    raw_ms = _predict_raw_ms(vm, stats, batch_size, quantile)
    if stats.vm_prediction_factors is not None:
        return stats.vm_prediction_factors.scale(raw_ms)
    factor = min(max(stats.vm_prediction_factor, MIN_PREDICTION_FACTOR), MAX_PREDICTION_FACTOR)
    return raw_ms * factor


def _predict_raw_ms(vm: VmState, stats: ModelStats, batch_size: int, quantile: float) -> float:
    if vm.ready_replicas == 0:
        if vm.booting_replicas == 0:
            return math.inf
        # waits for the first replica; the queue that built up meanwhile is split over them
        wait_ms = vm.boot_remaining_s * 1000.0
        queued = vm.outstanding / vm.booting_replicas
    else:
        wait_ms = 0.0
        queued = _queued_rows(vm, quantile)
    cap = max(vm.max_batch_size, 1)
    curve = stats.vm_service_ms_by_batch
    if queued <= 0:  # an idle replica starts a lone request at once (vmpool/batching.py)
        service_ms = batch_service_ms(curve, min(batch_size, cap))
        return wait_ms + service_ms * tail_factor(stats, quantile)
    rows = int(math.ceil(queued))
    # the gateway does not see how the rows ahead split between the running batch and the
    # queue: a full running batch, or a single row that started just before the rest came
    # (one more round behind it, the shape a step in load leaves; 15-30 % over the prediction
    # when only the first was modelled); the latter is a tail case, not the median's
    service_ms = _rounds_ms(curve, cap, rows, min(rows, cap), batch_size, quantile)
    if quantile > 0.5:
        service_ms = max(service_ms, _rounds_ms(curve, cap, rows, 1, batch_size, quantile))
    return wait_ms + service_ms * tail_factor(stats, quantile)


def _rounds_ms(curve, cap: int, rows: int, running: int, batch_size: int, quantile: float) -> float:
    """Time to this request's answer behind ``rows`` rows of which ``running`` are served now."""
    behind = rows - running
    # the running batch's remaining time is uniform over its length: its ``quantile``
    service_ms = quantile * batch_service_ms(curve, running)
    service_ms += (behind // cap) * batch_service_ms(curve, cap)
    return service_ms + batch_service_ms(curve, min(behind % cap + batch_size, cap))
