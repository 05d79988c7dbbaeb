"""The offline optimum: a hindsight lower bound on the cost of serving a trace within its SLO.

Relaxations, each of which can only lower the cost (so it is a bound, not a schedule to copy):
- demand is fluid per bin (1 s, coarser for very long traces): no queueing inside a bin;
- a VM serves up to its full-batch capacity whenever one full batch meets the SLO;
- functions are always warm when used (arrivals are known, so they could be pre-warmed) and
  cost their mean warm billed duration.
Not relaxed, so the bound is exact only up to it: a request must be served within its bin (a
real schedule may carry up to an SLO's worth of a bin's excess into the next one); at 1 s bins
and a 300 ms SLO this can only overstate the bound where bins overflow a layer briefly.
Kept, because the issue asks for them: a VM is billed from launch, i.e. ``boot_s`` before it
can serve, and every VM interval is billed at least ``vm_min_billed_s``.

Solution: with identical VMs and a linear function price the problem splits into "layers": the
k-th VM serves ``s_k(t) = clip(r(t) - (k-1) C, 0, C)``, and layer k is on exactly when
``n(t) >= k``. Each layer is then a two-state (off/on) problem with a boot cost and a
minimum-billing tail, solved exactly by a dynamic programme, all layers at once in numpy.
"""

from __future__ import annotations

import math

import numpy as np

from .result import SimResult, Timeline


def replica_capacity_per_s(profile) -> float:
    """Rows per second at the largest batch whose service time alone meets the SLO."""
    best = 0.0
    for b in range(1, profile.vm_max_batch_size + 1):
        ms = profile.vm_service_ms(b) + profile.gateway_overhead_ms
        if ms <= profile.slo_ms:
            best = max(best, b / profile.vm_service_ms(b) * 1000.0)
    return best


def function_cost_per_request(profile, prices) -> tuple[float, float]:
    """(usd, gb_s) of one warm burst request at its mean billed duration; inf if the burst
    path cannot meet the SLO at its percentile."""
    if profile.burst_quantile_ms(0.99) + profile.gateway_overhead_ms > profile.slo_ms:
        return math.inf, 0.0
    mean_ms = profile.burst_billed_ms * math.exp(profile.burst_sigma**2 / 2)
    gb_s = mean_ms / 1000.0 * profile.burst_memory_mb / 1024.0
    puts, gets = profile.burst_store_ops
    usd = (
        gb_s * prices.fn_usd_per_gb_s
        + profile.burst_instances * prices.fn_usd_per_request
        + puts * prices.store_put_usd
        + gets * prices.store_get_usd
    )
    return usd, gb_s


def solve_layers(
    demand: np.ndarray,
    bin_s: float,
    capacity: float,
    vm_usd_per_s: float,
    fn_usd: float,
    boot_s: float,
    min_billed_s: float,
) -> dict:
    """Exact DP per layer. ``demand`` is requests per bin. Returns cost and its parts."""
    per_bin_cap = capacity * bin_s
    if per_bin_cap <= 0:
        if not np.isfinite(fn_usd):
            raise ValueError("neither VMs nor functions can meet the SLO with this profile")
        total = float(demand.sum())
        return {"cost_usd": total * fn_usd, "vm_bins": 0.0, "fn_requests": total, "layers": 0}
    layers = max(1, math.ceil(demand.max() / per_bin_cap))
    k = np.arange(layers)[:, None]
    served = np.clip(demand[None, :] - k * per_bin_cap, 0, per_bin_cap)  # (layers, bins)
    on_bin = vm_usd_per_s * bin_s
    start_usd = vm_usd_per_s * boot_s
    m = max(1, math.ceil(max(min_billed_s - boot_s, 0.0) / bin_s))  # bins until billing is linear
    tail = np.array(
        [vm_usd_per_s * max(min_billed_s - boot_s - j * bin_s, 0.0) for j in range(m + 1)]
    )  # owed on stopping after j bins on
    inf = math.inf
    off = np.zeros(layers)
    on = np.full((layers, m + 1), inf)  # on[:, j]: on for j bins (j = m means >= m)
    on[:, m] = 0.0  # as the simulator starts: VMs may already be up (no boot, no minimum owed)
    acc_off = np.zeros((layers, 2))  # (vm bins, fn requests) along the best path
    acc_on = np.zeros((layers, m + 1, 2))
    fn_cost = served * fn_usd if np.isfinite(fn_usd) else np.where(served > 0, inf, 0.0)
    for t in range(served.shape[1]):
        off, on, acc_off, acc_on = _advance_bin(
            off, on, acc_off, acc_on, tail, start_usd, on_bin, fn_cost[:, t], served[:, t]
        )
    final = on + tail[None, :]
    j_best = np.argmin(final, axis=1)
    end_on = final[np.arange(layers), j_best]
    use_on = end_on < off
    cost = np.where(use_on, end_on, off)
    acc = np.where(use_on[:, None], acc_on[np.arange(layers), j_best], acc_off)
    return {
        "cost_usd": float(cost.sum()),
        "vm_bins": float(acc[:, 0].sum()),
        "fn_requests": float(acc[:, 1].sum()),
        "layers": layers,
    }


def _advance_bin(off, on, acc_off, acc_on, tail, start_usd, on_bin, fn_cost_t, served_t):
    """One bin of the DP, every layer at once: the cheapest way to be off (stopped now or
    staying off, functions serving the layer) or on for j bins (started now or kept on)."""
    layers, m = on.shape[0], on.shape[1] - 1
    stop = on + tail[None, :]
    j_best = np.argmin(stop, axis=1)
    stop_best = stop[np.arange(layers), j_best]
    from_on = stop_best < off
    new_off = np.where(from_on, stop_best, off) + fn_cost_t
    new_acc_off = np.where(from_on[:, None], acc_on[np.arange(layers), j_best], acc_off)
    new_acc_off[:, 1] += served_t
    start = off + start_usd + on_bin
    new_on = np.full_like(on, math.inf)
    new_acc_on = np.zeros_like(acc_on)
    new_on[:, 1] = start
    new_acc_on[:, 1] = acc_off
    if m > 1:
        new_on[:, 2:] = on[:, 1:-1] + on_bin
        new_acc_on[:, 2:] = acc_on[:, 1:-1]
    stay = on[:, m] + on_bin
    better = stay < new_on[:, m]
    new_on[:, m] = np.where(better, stay, new_on[:, m])
    new_acc_on[:, m] = np.where(better[:, None], acc_on[:, m], new_acc_on[:, m])
    new_acc_on[:, 1:, 0] += 1
    return new_off, new_on, new_acc_off, new_acc_on


def optimum_result(trace, profile, prices) -> SimResult:
    """The bound as a ``SimResult`` (same JSON keys as a policy run)."""
    span = max(trace.duration_s, 1.0)
    bin_s = 1.0 if span <= 6 * 3600 else 5.0  # coarser bins only lower the bound further
    demand = trace.counts(bin_s).astype(np.float64)
    capacity = replica_capacity_per_s(profile)
    fn_usd, fn_gb_s = function_cost_per_request(profile, prices)
    sol = solve_layers(
        demand,
        bin_s,
        capacity,
        prices.vm_usd_per_hour / 3600.0,
        fn_usd,
        profile.vm_boot_s,
        prices.vm_min_billed_s,
    )
    n = len(trace)
    counts = np.bincount(trace.tenant_idx, minlength=len(trace.tenants))
    summary = {
        "policy": "optimum",
        "trace": trace.name,
        "model": profile.model,
        "requests": n,
        "duration_s": round(trace.duration_s, 3),
        "slo_ms": profile.slo_ms,
        "slo_attainment": 1.0,
        "p50_ms": None,
        "p99_ms": None,
        "cost_usd": sol["cost_usd"],
        "cost_per_1k_usd": sol["cost_usd"] / n * 1000.0 if n else 0.0,
        "vm_hours": sol["vm_bins"] * bin_s / 3600.0,
        "function_gb_s": sol["fn_requests"] * fn_gb_s,
        "cold_starts": 0,
        "requests_vm": int(n - sol["fn_requests"]),
        "requests_burst": int(round(sol["fn_requests"])),
        "rejected": 0,
        "spill_ratio": sol["fn_requests"] / n if n else 0.0,
        "bin_s": bin_s,
        "vm_capacity_per_s": capacity,
        "peak_vm_replicas": sol["layers"],
        "tenants": {
            name: {"requests": int(counts[k]), "cost_usd": sol["cost_usd"] * counts[k] / max(n, 1)}
            for k, name in enumerate(trace.tenants)
        },
    }
    return SimResult(summary, np.empty(0), np.empty(0, dtype=np.uint8), Timeline())
