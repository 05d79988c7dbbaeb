"""The comparison table every simulate run prints: each preset next to vm-peak and the optimum."""

from __future__ import annotations

COLUMNS = (
    "policy",
    "requests",
    "attain %",
    "p50 ms",
    "p99 ms",
    "cost $",
    "x optimum",
    "vm-peak/x",
    "VM h",
    "fn GB-s",
    "spill %",
    "cold",
)


def ratios(summaries: list[dict]) -> list[dict]:
    """Adds ``cost_vs_optimum`` and ``vm_peak_vs_cost`` where those runs are present."""
    by = {s["policy"]: s for s in summaries}
    opt = by.get("optimum", {}).get("cost_usd")
    peak = by.get("vm-peak", {}).get("cost_usd")
    for s in summaries:
        cost = s["cost_usd"]
        s["cost_vs_optimum"] = cost / opt if opt else None
        s["vm_peak_vs_cost"] = peak / cost if peak and cost else None
    return summaries


def render(summaries: list[dict]) -> str:
    rows = [COLUMNS]
    for s in summaries:
        rows.append(
            (
                s["policy"],
                str(s["requests"]),
                f"{s['slo_attainment'] * 100:.2f}",
                _num(s.get("p50_ms"), ".1f"),
                _num(s.get("p99_ms"), ".1f"),
                f"{s['cost_usd']:.4f}",
                _num(s.get("cost_vs_optimum"), ".2f"),
                _num(s.get("vm_peak_vs_cost"), ".2f"),
                f"{s['vm_hours']:.2f}",
                f"{s['function_gb_s']:.1f}",
                f"{s['spill_ratio'] * 100:.1f}",
                str(s["cold_starts"]),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = [
        "  ".join(
            c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _num(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)
