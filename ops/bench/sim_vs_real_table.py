"""``sim_vs_real``'s side-by-side table of the live and the simulated run."""

from __future__ import annotations


def print_sides(live: dict, sim: dict, sim_cost: float) -> None:
    """The live and simulated figures side by side."""
    rows = [
        ("requests", live["requests"], sim["requests"]),
        ("SLO attainment %", live["slo_attainment"] * 100, sim["slo_attainment"] * 100),
        ("p50 ms", live["p50_ms"], sim["p50_ms"]),
        ("p99 ms", live["p99_ms"], sim["p99_ms"]),
        ("to functions", live["requests_burst"], sim["requests_burst"]),
        ("cold starts", live["cold_starts"], sim["cold_starts"]),
        ("peak VM replicas", live["peak_vm_replicas"], sim["peak_vm_replicas"]),
        ("VM hours", live["vm_hours"], sim["vm_hours"]),
        ("cost $", live["cost_usd"], sim_cost),
    ]
    print(f"{'':<18} {'live':>12} {'simulated':>12}")
    for name, a, b in rows:
        print(
            f"{name:<18} {a:>12.4f} {b:>12.4f}"
            if isinstance(a, float)
            else f"{name:<18} {a:>12} {b:>12}"
        )
