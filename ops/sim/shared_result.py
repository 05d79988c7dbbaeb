"""A shared-fleet run's result: the usual summary over every request (the same keys as one
model's run), with ``fleet`` = ``"shared"`` and each model's own summary under ``models``.

The fleet's VM bill is one; a model's summary carries its share of it by its share of the
fleet's busy time (each batch's service time goes to its model), as tenants' shares are taken
(``result.py``), so the models' ``vm_usd``, ``vm_hours`` and ``vm_billed_hours`` add up to the
fleet's. Function costs and cold starts are each model's own.
"""

from __future__ import annotations

import numpy as np

from .result import SimResult, Timeline, _group_pct, _pct, cleanup_puts


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
    """One model's figures in the shape of ``SimResult.build``'s summary."""
    p, prices, fn = lane.p, sim.s.prices, lane.fn
    billed_s, up_s = fleet
    slo = np.array([r.slo_ms for r in lane.requests])[sub.tenant_idx]
    met, served = lat <= slo, np.isfinite(lat)
    vm_usd = billed_s * prices.vm_usd_per_hour / 3600.0
    fn_gb_s = fn.billed_ms * p.burst_memory_mb / 1024.0 / 1000.0
    fn_compute_usd = fn_gb_s * prices.fn_usd_per_gb_s
    fn_request_usd = fn.invocations * prices.fn_usd_per_request
    puts, gets = p.burst_store_ops[0] + cleanup_puts(p.burst_store_ops[0]), p.burst_store_ops[1]
    store_usd = fn.requests * (puts * prices.store_put_usd + gets * prices.store_get_usd)
    warm_usd = lane.warm_cost_usd
    total = vm_usd + fn_compute_usd + fn_request_usd + store_usd + warm_usd
    n = len(lat)
    summary = {
        "policy": sim.s.name,
        "trace": sim.trace.name,
        "model": p.model,
        "profile_sources": {"profile": p.source, **p.provenance},
        "requests": n,
        "duration_s": round(end_s, 3),
        "slo_ms": p.slo_ms,
        "slo_attainment": float(met.mean()) if n else 1.0,
        "p50_ms": _pct(lat[served], 50),
        "p99_ms": _pct(lat[served], 99),
        "cost_usd": total,
        "cost_per_1k_usd": total / n * 1000.0 if n else 0.0,
        "vm_usd": vm_usd,
        "function_compute_usd": fn_compute_usd,
        "function_requests_usd": fn_request_usd,
        "store_usd": store_usd,
        "warm_functions_usd": warm_usd,
        "vm_hours": up_s / 3600.0,
        "vm_billed_hours": billed_s / 3600.0,
        "function_gb_s": fn_gb_s,
        "cold_starts": fn.cold_starts,
        "requests_vm": int((path == 0).sum()),
        "requests_burst": int((path == 1).sum()),
        "rejected": int((path == 2).sum()),
        "spill_ratio": float((path == 1).mean()) if n else 0.0,
        "requests_queued": 0,
        "queued_slo_attainment": None,
        "throttled": fn.throttled,
        "waited_for_instance": fn.waited,
        "vm_batches": sim.vm.batches[lane.m],
        "vm_busy_share": None,
    }
    busy = sim.vm.model_busy_s
    summary["vm_busy_share"] = busy[lane.m] / sum(busy) if sum(busy) > 0 else None
    parts = (vm_usd, fn_compute_usd, fn_request_usd, store_usd, warm_usd)
    summary["tenants"] = _tenants(sim, lane, sub, lat, met, served, parts)
    return summary


def _tenants(sim, lane, sub, lat, met, served, parts) -> dict:
    """The model's tenants (``result._tenants``'s rule within the model's share)."""
    names = list(sim.trace.tenants)
    idx = np.array([names.index(t) for t in sub.tenants], np.int64)[sub.tenant_idx]
    k_all = len(names)
    counts = np.bincount(idx, minlength=k_all)
    busy = np.asarray(sim.vm.tenant_busy_s[lane.m])
    vm_share = busy / busy.sum() if busy.sum() > 0 else counts / max(counts.sum(), 1)
    billed = np.asarray(lane.fn_billed_by_tenant)
    fn_req = np.asarray(lane.fn_requests_by_tenant, dtype=np.float64)
    billed_share = billed / billed.sum() if billed.sum() > 0 else np.zeros_like(billed)
    req_share = fn_req / fn_req.sum() if fn_req.sum() > 0 else np.zeros_like(fn_req)
    met_n = np.bincount(idx, weights=met, minlength=k_all)
    p99 = _group_pct(idx[served], lat[served], k_all, 99)
    vm_usd, fn_compute, fn_requests, store, warm = parts
    out = {}
    for k in np.flatnonzero(counts):
        cost = {
            "vm_usd": vm_usd * vm_share[k],
            "function_compute_usd": fn_compute * billed_share[k],
            "function_requests_usd": fn_requests * req_share[k],
            "store_usd": store * req_share[k],
            "warm_functions_usd": warm * req_share[k],
        }
        out[names[k]] = {
            "requests": int(counts[k]),
            "slo_attainment": float(met_n[k] / counts[k]),
            "p99_ms": p99[k],
            "cost_usd": sum(cost.values()),
            **cost,
        }
    return out
