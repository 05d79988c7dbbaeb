"""`tidegate simulate --fleet per-model` on a trace of several models without `--model`: each
model on its own fleet with its own profile figures (what one gateway per model would cost; a
gateway serving several models runs one fleet of replicas holding them all: `--fleet shared`,
the default, ``simulate_fleet.py``), each policy's runs summed into one result of the usual
shape, with each model's own summary under ``models`` (``merge`` also builds the shared run's)."""

from __future__ import annotations

import numpy as np

from ops.sim.result import SimResult, Timeline, _group_pct, _pct

# summed over the models' runs, per tenant too (the rest is recomputed from the sums or the
# latencies)
_TENANT_SUMMED = (
    "requests",
    "cost_usd",
    "vm_usd",
    "function_compute_usd",
    "function_requests_usd",
    "store_usd",
    "warm_functions_usd",
)
_SUMMED = (
    *_TENANT_SUMMED,
    "vm_hours",
    "vm_billed_hours",
    "function_gb_s",
    "cold_starts",
    "requests_vm",
    "requests_burst",
    "rejected",
    "requests_queued",
    "throttled",
    "waited_for_instance",
    "vm_batches",
)


def merge(runs: list[SimResult], subs: list, trace) -> SimResult:
    """One policy's runs on each model's part of ``trace`` (``subs``, in the same order) as
    one result: sums, request-weighted attainments, percentiles of all the latencies."""
    first = runs[0].summary
    out = {k: first[k] for k in ("policy", "profile_sources") if k in first}
    out["trace"] = trace.name
    out["model"] = ", ".join(r.summary["model"] for r in runs)
    out["slo_ms"] = {r.summary["model"]: r.summary["slo_ms"] for r in runs}
    for key in _SUMMED:
        out[key] = sum(r.summary.get(key) or 0 for r in runs)
    n = out["requests"]
    out["duration_s"] = max(r.summary.get("duration_s", 0.0) for r in runs)
    out["slo_attainment"] = _weighted(runs, "slo_attainment", "requests") if n else 1.0
    out["queued_slo_attainment"] = (
        _weighted(runs, "queued_slo_attainment", "requests_queued")
        if out["requests_queued"]
        else None
    )
    lat = np.concatenate([np.asarray(r.latency_ms, np.float64) for r in runs])
    served = lat[np.isfinite(lat)]
    if lat.size:
        out["p50_ms"], out["p99_ms"] = _pct(served, 50), _pct(served, 99)
    else:  # (the optimum: a bound, no run's latencies)
        out["p50_ms"] = out["p99_ms"] = None
    out["cost_per_1k_usd"] = out["cost_usd"] / n * 1000.0 if n else 0.0
    out["spill_ratio"] = out["requests_burst"] / n if n else 0.0
    timeline = _summed_timeline([r.timeline for r in runs])
    out["peak_vm_replicas"] = max(timeline.vm_ready, default=0)
    out["tenants"] = _tenants(runs, subs, trace)
    out["models"] = {r.summary["model"]: r.summary for r in runs}
    path = np.concatenate([np.asarray(r.path, np.uint8) for r in runs])
    return SimResult(out, lat, path, timeline)


def _weighted(runs: list[SimResult], key: str, weight: str) -> float:
    total = sum(r.summary.get(weight) or 0 for r in runs)
    met = sum((r.summary.get(key) or 0.0) * (r.summary.get(weight) or 0) for r in runs)
    return met / total if total else 1.0


def _tenants(runs: list[SimResult], subs: list, trace) -> dict:
    """Each tenant's figures over every model it used; its p99 over all its latencies."""
    names = list(trace.tenants)
    out: dict[str, dict] = {}
    groups, values = [], []
    for run, sub in zip(runs, subs, strict=True):
        lat = np.asarray(run.latency_ms, np.float64)
        if lat.size == len(sub):
            index = np.array([names.index(t) for t in sub.tenants], np.int64)
            groups.append(index[sub.tenant_idx])
            values.append(lat)
        for name, t in run.summary.get("tenants", {}).items():
            acc = out.setdefault(name, {k: 0 for k in _TENANT_SUMMED} | {"_met": 0.0})
            for k in _TENANT_SUMMED:
                acc[k] += t.get(k) or 0
            acc["_met"] += (t.get("slo_attainment") or 0.0) * (t.get("requests") or 0)
    p99: list = [None] * len(names)
    if groups:
        g, v = np.concatenate(groups), np.concatenate(values)
        ok = np.isfinite(v)
        p99 = _group_pct(g[ok], v[ok], len(names), 99)
    for name, acc in out.items():
        met = acc.pop("_met")
        acc["slo_attainment"] = met / acc["requests"] if acc["requests"] else 1.0
        acc["p99_ms"] = p99[names.index(name)] if name in names else None
    return out


def _summed_timeline(timelines: list[Timeline]) -> Timeline:
    """The models' timelines added tick by tick (the ticks of one simulation clock)."""
    keys = [k for k in Timeline().__dict__ if k != "t_s"]
    by_t: dict[float, list[float]] = {}
    for tl in timelines:
        columns = [getattr(tl, k) for k in keys]
        for i, t in enumerate(tl.t_s):
            row = by_t.setdefault(t, [0] * len(keys))
            for j, col in enumerate(columns):
                row[j] += col[i]
    out = Timeline()
    for t in sorted(by_t):
        out.add(t, *by_t[t])
    return out


def run_each(names: list[str], trace, profiles: dict, cfg, params: dict, seed: int, log) -> list:
    """Each policy of ``names`` on each model's part of ``trace`` with its profile, merged."""
    from ops.commands.simulate import describe, run_policies

    log(
        f"trace {trace.name}: {len(trace)} requests of {len(profiles)} models, "
        "each on its own fleet (--model to simulate one)"
    )
    subs = [trace.only_model(m) for m in profiles]
    per_model = []
    for sub, profile in zip(subs, profiles.values(), strict=True):
        describe(sub, profile, log)
        per_model.append(run_policies(names, sub, profile, cfg, params, seed, log=log))
    return [merge([runs[k] for runs in per_model], subs, trace) for k in range(len(names))]


def several_models_refused(trace) -> str:
    """Why a run that simulates one model's fleet (`tune`) refuses a trace of several."""
    counts = np.bincount(trace.model_idx, minlength=len(trace.models))
    shown = ", ".join(f"{m} {int(n)}" for m, n in zip(trace.models, counts, strict=True))
    return (
        f"trace {trace.name} has requests for {len(trace.models)} models ({shown}): "
        "a run simulates one model's fleet; choose one with --model"
    )
