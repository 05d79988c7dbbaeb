"""What a simulation run reports: the JSON summary (the same shape ``tidegate loadgen`` writes),
per-tenant costs and the load / VMs / spill timeline behind the plots.

Tenant cost attribution (the same rule ``tidegate report`` documents): function time, requests
and storage go to the tenant whose request used them; a VM's whole bill, idle time included, is
split over tenants by their share of VM busy time (each request's share of its batch's service
time). Kept warm functions are split by share of burst requests.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def cleanup_puts(plan_puts: float) -> int:
    """Store requests a burst request is billed beyond its plan's tensor transfers: the LIST
    (billed as a PUT) that deletes its tensors under req/, made only when some went through
    the store (``burst.runtime.run_master``); a request whose tensors all travelled inline
    lists nothing. (The gateway's LIST of resp/, for an output sent by key, is not told apart
    by the plan's counts: not counted.) Until the gateway skipped them, every request listed
    req/ twice and resp/ once ($15e-6 a request: 20x a delay-model function's time)."""
    return 1 if plan_puts > 0 else 0


@dataclass
class Timeline:
    """One sample per control tick."""

    t_s: list[float] = field(default_factory=list)
    arrivals: list[int] = field(default_factory=list)
    to_vm: list[int] = field(default_factory=list)
    to_burst: list[int] = field(default_factory=list)
    rejected: list[int] = field(default_factory=list)
    vm_ready: list[int] = field(default_factory=list)
    vm_booting: list[int] = field(default_factory=list)
    vm_desired: list[int] = field(default_factory=list)
    warm_functions: list[int] = field(default_factory=list)

    def add(self, t, arrivals, vm, burst, rejected, ready, booting, desired, warm) -> None:
        self.t_s.append(t)  # once per tick (86,400 a day): plain appends, no getattr
        self.arrivals.append(arrivals)
        self.to_vm.append(vm)
        self.to_burst.append(burst)
        self.rejected.append(rejected)
        self.vm_ready.append(ready)
        self.vm_booting.append(booting)
        self.vm_desired.append(desired)
        self.warm_functions.append(warm)

    def as_dict(self) -> dict:
        return {k: list(v) for k, v in self.__dict__.items()}


@dataclass
class SimResult:
    summary: dict
    latency_ms: np.ndarray
    path: np.ndarray
    timeline: Timeline

    @classmethod
    def build(cls, sim, end_s: float) -> "SimResult":
        trace = sim.trace
        jobs = np.asarray(sim.aq.finish() if sim.aq is not None else [], dtype=np.int64)
        lat = np.asarray(sim.lat, dtype=np.float64)
        path = np.frombuffer(bytes(sim.path), dtype=np.uint8)
        slo = np.array([r.slo_ms for r in sim.requests])[trace.tenant_idx]
        if jobs.size:  # a queued job meets its SLO when answered within its deadline
            deadline_ms = np.array([(d or 0.0) * 1000.0 for d in sim.deadline_of])
            slo[jobs] = deadline_ms[trace.tenant_idx[jobs]]
        met = lat <= slo
        served = np.isfinite(lat)
        vm = sim.vm
        fleet = vm.billed_s(sim.s.prices.vm_min_billed_s)
        summary, parts = run_summary(
            sim, sim.p, sim.fn, fleet, sim.warm_cost_usd, end_s, lat, path, met, jobs
        )
        summary["vm_batches"] = vm.batches
        summary["peak_vm_replicas"] = max(sim.timeline.vm_ready, default=0)
        summary["tenants"] = tenant_costs(
            trace.tenants, trace.tenant_idx, (lat, met, served), parts, sim, vm.tenant_busy_s
        )
        return cls(summary, lat, path, sim.timeline)


def run_summary(sim, p, fn, fleet: tuple, warm_usd: float, end_s, lat, path, met, jobs) -> tuple:
    """The summary of one model's requests (``lat``, ``path``, ``met``: theirs; ``jobs``: the
    queued ones) served by ``fn`` and a fleet billed ``fleet`` = (billed s, up s), in the
    issue's keys, and its cost parts (vm, function compute, requests, store, warm) in USD. The
    shared fleet's per-model summaries are made here too (``shared_result.py``)."""
    prices, n = sim.s.prices, len(lat)
    billed_s, up_s = fleet
    served = np.isfinite(lat)
    vm_usd = billed_s * prices.vm_usd_per_hour / 3600.0
    fn_gb_s = fn.billed_ms * p.burst_memory_mb / 1024.0 / 1000.0
    fn_compute_usd = fn_gb_s * prices.fn_usd_per_gb_s
    fn_request_usd = fn.invocations * prices.fn_usd_per_request
    puts, gets = p.burst_store_ops[0] + cleanup_puts(p.burst_store_ops[0]), p.burst_store_ops[1]
    store_usd = fn.requests * (puts * prices.store_put_usd + gets * prices.store_get_usd)
    total = vm_usd + fn_compute_usd + fn_request_usd + store_usd + warm_usd
    summary = {
        "policy": sim.s.name,
        "trace": sim.trace.name,
        "model": p.model,
        "profile_sources": {"profile": p.source, **p.provenance},  # (SimProfile.provenance)
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
        "requests_queued": int(jobs.size),
        "queued_slo_attainment": float(met[jobs].mean()) if jobs.size else None,
        "throttled": fn.throttled,
        "waited_for_instance": fn.waited,
    }
    return summary, (vm_usd, fn_compute_usd, fn_request_usd, store_usd, warm_usd)


def _pct(values: np.ndarray, q: float) -> float | None:
    return float(np.percentile(values, q)) if values.size else None


def tenant_costs(names, idx, answers: tuple, parts: tuple, bills, busy_s, only_seen=False):
    """Each tenant's requests, attainment, p99 and cost (the module's rule): ``names`` and
    ``idx`` (a tenant index per request), ``answers`` = (latency, met, served) per request,
    ``parts`` the run's cost parts, ``bills`` what holds ``fn_billed_by_tenant`` and
    ``fn_requests_by_tenant``, ``busy_s`` the VM busy seconds per tenant. ``only_seen``:
    tenants with no request left out."""
    lat, met, served = answers
    k_all = len(names)
    counts = np.bincount(idx, minlength=k_all)
    busy = np.asarray(busy_s)
    vm_share = busy / busy.sum() if busy.sum() > 0 else counts / max(counts.sum(), 1)
    billed = np.asarray(bills.fn_billed_by_tenant)
    fn_req = np.asarray(bills.fn_requests_by_tenant, dtype=np.float64)
    vm_usd, fn_compute, fn_requests, store, warm = parts
    billed_share = billed / billed.sum() if billed.sum() > 0 else np.zeros_like(billed)
    req_share = fn_req / fn_req.sum() if fn_req.sum() > 0 else np.zeros_like(fn_req)
    met_n = np.bincount(idx, weights=met, minlength=k_all)
    p99 = _group_pct(idx[served], lat[served], k_all, 99)
    out = {}
    for k in np.flatnonzero(counts) if only_seen else range(k_all):  # (bincounts: a mask per
        cost = {  # tenant was O(n x T))
            "vm_usd": vm_usd * vm_share[k],
            "function_compute_usd": fn_compute * billed_share[k],
            "function_requests_usd": fn_requests * req_share[k],
            "store_usd": store * req_share[k],
            "warm_functions_usd": warm * req_share[k],
        }
        out[names[k]] = {
            "requests": int(counts[k]),
            "slo_attainment": float(met_n[k] / counts[k]) if counts[k] else 1.0,
            "p99_ms": p99[k],
            "cost_usd": sum(cost.values()),
            **cost,
        }
    return out


def _group_pct(groups: np.ndarray, values: np.ndarray, n_groups: int, q: float) -> list:
    """``np.percentile(values[groups == g], q)`` for every g (None for an empty one), in one
    sort: the same linear interpolation, the same float operations."""
    order = np.lexsort((values, groups))
    v = values[order]
    sizes = np.bincount(groups, minlength=n_groups)
    starts = np.cumsum(sizes) - sizes
    out: list = [None] * n_groups
    for g in np.flatnonzero(sizes):
        pos = q / 100.0 * (sizes[g] - 1)
        lo = int(np.floor(pos))
        hi = min(lo + 1, int(sizes[g]) - 1)
        a, b, t = v[starts[g] + lo], v[starts[g] + hi], pos - lo
        out[g] = float(b - (b - a) * (1 - t) if t >= 0.5 else a + (b - a) * t)
    return out
