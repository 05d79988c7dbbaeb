"""A shared-fleet run's result: the usual summary over every request (the same keys as one
model's run), with ``fleet`` = ``"shared"`` and each model's own summary under ``models``.

The fleet's VM bill is one; a model's summary carries its share of it by its share of the
fleet's busy time (each batch's service time goes to its model), as tenants' shares are taken
(``result.py``), so the models' ``vm_usd``, ``vm_hours`` and ``vm_billed_hours`` add up to the
fleet's. Function costs and cold starts are each model's own.
"""

from __future__ import annotations

import numpy as np

from .result import SimResult, Timeline, run_summary, tenant_costs


def build_shared(sim, end_s: float) -> SimResult:
    from ops.commands.simulate_models import merge

    trace, prices, vm = sim.trace, sim.s.prices, sim.vm
    billed_s, up_s = vm.billed_s(prices.vm_min_billed_s)
    busy = np.asarray(vm.model_busy_s)
    share = busy / busy.sum() if busy.sum() > 0 else _request_share(trace)
    lat = np.asarray(sim.lat, dtype=np.float64)
    path = np.frombuffer(bytes(sim.path), dtype=np.uint8)
    runs, subs = [], []
    for lane in sim.lanes:
        keep = trace.model_idx == lane.m
        sub = trace.only_model(lane.model) if len(trace.models) > 1 else trace
        fleet = (billed_s * share[lane.m], up_s * share[lane.m])
        summary = _model_summary(sim, lane, sub, lat[keep], path[keep], fleet, end_s)
        runs.append(SimResult(summary, lat[keep], path[keep], Timeline()))
        subs.append(sub)
    merged = merge(runs, subs, trace)
    out = merged.summary
    out["policy"] = sim.s.name
    out["fleet"] = "shared"
    out["vm_batches"] = int(sum(vm.batches))
    out["peak_vm_replicas"] = max(sim.timeline.vm_ready, default=0)
    return SimResult(out, lat, path, sim.timeline)


def _request_share(trace) -> np.ndarray:
    counts = np.bincount(trace.model_idx, minlength=len(trace.models)).astype(np.float64)
    return counts / max(counts.sum(), 1.0)


def _model_summary(sim, lane, sub, lat, path, fleet, end_s: float) -> dict:
    """One model's figures in the shape of ``SimResult.build``'s summary (``run_summary``)."""
    slo = np.array([r.slo_ms for r in lane.requests])[sub.tenant_idx]
    met, served = lat <= slo, np.isfinite(lat)
    none = np.empty(0, dtype=np.int64)  # (no queued jobs: async tenants run per model)
    summary, parts = run_summary(
        sim, lane.p, lane.fn, fleet, lane.warm_cost_usd, end_s, lat, path, met, none
    )
    summary["vm_batches"] = sim.vm.batches[lane.m]
    busy = sim.vm.model_busy_s
    summary["vm_busy_share"] = busy[lane.m] / sum(busy) if sum(busy) > 0 else None
    names = list(sim.trace.tenants)  # the model's tenants, coded as the whole trace's
    idx = np.array([names.index(t) for t in sub.tenants], np.int64)[sub.tenant_idx]
    answers = (lat, met, served)
    summary["tenants"] = tenant_costs(
        names, idx, answers, parts, lane, sim.vm.tenant_busy_s[lane.m], only_seen=True
    )
    return summary
