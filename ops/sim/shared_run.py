"""Running presets on a shared fleet (``shared.py``), and the shared fleet's offline bound.

A preset's parameters come from one profile (a replica's capacity, the burst path's latency);
the gateway's one scaler serves every model, so here they come from the models' mixture: each
batch size's service time averaged over the models by their share of the trace's requests
(the fleet's capacity at that mix), the burst latency likewise, the tightest SLO, the longest
boot and the most instances per burst request.

The offline optimum summed over the models (each on its own fleet) is no bound for a shared
fleet: one replica serves two models' lulls and peaks, and one billing minimum covers both. The
bound here treats every request as the cheapest model could serve it (each batch size at the
fastest model's time, the cheapest burst request that meets the loosest SLO, the shortest boot
and gateway overhead, the loosest SLO) on one fleet: a relaxation of the shared fleet, so a
lower bound on its cost.
"""

from __future__ import annotations

import math

import numpy as np

from policies.costs import PriceTable

from .presets import PolicySpec, build_policies, preset_spec
from .shared import SharedSetup, SharedSimulation

BOUND_NOTE = (
    "shared-fleet bound: every request as the cheapest model serves it, on one fleet "
    "(the per-model optima's sum is no bound for a shared fleet)"
)


def _shares(trace) -> np.ndarray:
    counts = np.bincount(trace.model_idx, minlength=len(trace.models)).astype(np.float64)
    return counts / max(counts.sum(), 1.0)


def mixture_profile(trace, profiles: list):
    """One profile for a preset's parameters on a fleet serving ``profiles``' models."""
    w = _shares(trace)
    top = max(p.vm_max_batch_size for p in profiles)
    curve = tuple(
        (b, round(sum(wi * p.vm_service_ms(b) for wi, p in zip(w, profiles, strict=True)), 6))
        for b in range(1, top + 1)
    )
    main = profiles[int(np.argmax(w))]
    return main.with_overrides(
        vm_service_ms_by_batch=curve,
        vm_max_batch_size=top,
        vm_boot_s=max(p.vm_boot_s for p in profiles),
        slo_ms=min(p.slo_ms for p in profiles),
        burst_p50_ms=float(sum(wi * p.burst_p50_ms for wi, p in zip(w, profiles, strict=True))),
        burst_instances=max(p.burst_instances for p in profiles),
    )


def bound_profile(profiles: list, slo_ms_by_tenant: dict, trace, prices: PriceTable):
    """The relaxed single-model profile of the shared bound (the module's doc)."""
    from .optimum import function_cost_per_request

    present = {trace.tenants[k] for k in set(trace.tenant_idx.tolist())}
    loosest = max(
        [p.slo_ms for p in profiles]
        + [slo_ms_by_tenant[t] for t in present if t in slo_ms_by_tenant]
    )
    top = max(p.vm_max_batch_size for p in profiles)
    curve = tuple(
        (b, min(p.vm_service_ms(b) for p in profiles if b <= p.vm_max_batch_size))
        for b in range(1, top + 1)
    )
    overhead = min(p.gateway_overhead_ms for p in profiles)

    def fn_usd(p) -> float:
        relaxed = p.with_overrides(slo_ms=loosest, gateway_overhead_ms=overhead)
        return function_cost_per_request(relaxed, prices)[0]

    cheapest = min(profiles, key=lambda p: (fn_usd(p), p.burst_billed_ms))
    return cheapest.with_overrides(
        model=", ".join(trace.models),
        vm_service_ms_by_batch=curve,
        vm_max_batch_size=top,
        vm_boot_s=min(p.vm_boot_s for p in profiles),
        gateway_overhead_ms=overhead,
        slo_ms=float(loosest),
    )


def run_shared_spec(
    trace,
    spec: PolicySpec,
    profiles: list,
    *,
    prices: PriceTable | None = None,
    name: str = "",
    slo_ms_by_tenant: dict | None = None,
    tick_s: float = 1.0,
    seed: int = 0,
):
    prices = prices or PriceTable()
    routing, scaler = build_policies(spec, prices)
    setup = SharedSetup(
        profiles=profiles,
        routing=routing,
        autoscaler=scaler,
        prices=prices,
        initial_replicas=spec.initial_replicas,
        tick_s=tick_s,
        slo_ms_by_tenant=slo_ms_by_tenant or {},
        seed=seed,
        name=name or f"{spec.routing}+{spec.autoscaling}",
    )
    return SharedSimulation(trace, setup).run()


def shared_peak_replicas(trace, profiles: list) -> int:
    """vm-peak's shared fleet: the busiest second of replica time, each arrival weighed by
    1 / what a replica serves of its model within that model's SLO (``start_capacity_per_s``),
    over windows [t, t + 1 s) starting at any arrival, as ``peak_replicas`` counts one model's.
    Out-of-phase peaks share replicas; peaks that meet add up. The mixture profile sized it at
    the tightest SLO for every model's batches: a 6 ms model's SLO over ResNet-50's batches
    gave 54 VMs where one fleet per model, summed, was 8 (scaler25), so a shared run's "below
    vm-peak" flattered it."""
    from .presets import start_capacity_per_s

    arrivals = np.asarray(trace.arrivals_s, dtype=np.float64)
    if not len(arrivals):
        return 1
    per_model = np.array([1.0 / start_capacity_per_s(p) for p in profiles])
    cum = np.concatenate(([0.0], np.cumsum(per_model[trace.model_idx])))
    ends = np.searchsorted(arrivals, arrivals + 1.0, side="left")
    busiest = float((cum[ends] - cum[: len(arrivals)]).max())
    return max(1, math.ceil(busiest - 1e-9))


def simulate_shared(
    trace,
    preset: str,
    profiles: list,
    *,
    params: dict | None = None,
    prices: PriceTable | None = None,
    slo_ms_by_tenant: dict | None = None,
    tick_s: float = 1.0,
    seed: int = 0,
):
    """One preset (``optimum``: the shared bound) on one fleet serving every model of
    ``trace`` (``profiles`` in ``trace.models`` order)."""
    prices = prices or PriceTable()
    if preset == "optimum":
        return shared_optimum(trace, profiles, prices, slo_ms_by_tenant or {}, seed)
    params = dict(params or {})
    if preset == "vm-peak" and "autoscaling.replicas" not in params:
        n = shared_peak_replicas(trace, profiles)
        params.update({f"autoscaling.{k}": n for k in ("replicas", "min_replicas", "max_replicas")})
    spec = preset_spec(preset, trace, mixture_profile(trace, profiles), params)
    return run_shared_spec(
        trace,
        spec,
        profiles,
        prices=prices,
        name=preset,
        slo_ms_by_tenant=slo_ms_by_tenant,
        tick_s=tick_s,
        seed=seed,
    )


def shared_optimum(trace, profiles: list, prices, slo_ms_by_tenant: dict, seed: int = 0):
    from .optimum import optimum_result

    relaxed = bound_profile(profiles, slo_ms_by_tenant, trace, prices)
    one = trace.with_model(relaxed.model)
    res = optimum_result(one, relaxed, prices, None, seed=seed)
    res.summary["model"] = ", ".join(trace.models)
    res.summary["fleet"] = "shared"
    res.summary["bound"] = BOUND_NOTE
    if math.isfinite(res.summary.get("cost_usd", math.inf)):
        res.summary["slo_ms"] = {p.model: p.slo_ms for p in profiles}
    return res
