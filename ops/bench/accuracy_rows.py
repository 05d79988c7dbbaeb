"""Rows of ``ops/bench/plan_accuracy.py``: a measured plan against its prediction, and how
one is printed."""

from __future__ import annotations

import os
import statistics
from statistics import NormalDist

import numpy as np


def _quantile(xs: list[float], q: float) -> float:
    return float(np.quantile(np.asarray(xs), q))


def accuracy_row(model, label, memory_mb, plan, pred, measured) -> dict:
    answers, sched = measured
    lat = [a.total_ms for a in answers]
    p50 = statistics.median(lat)
    return {
        "model": model,
        "plan": label,
        "memory_mb": memory_mb,
        "plan_id": plan.plan_id,
        "split_stages": sum(1 for s in plan.stages if s.split != "serial"),
        "max_workers_used": max([s.workers for s in plan.stages] or [0]),
        "predicted_p50_ms": pred.p50_ms,
        "predicted_p99_ms": pred.p99_ms,
        "predicted_cost_usd": pred.cost_usd,
        "measured_p50_ms": p50,
        "measured_p99_ms": _quantile(lat, 0.99),
        "samples": len(lat),
        "latencies_ms": lat,  # in the order measured (the plans took turns)
        "error_p50": (pred.p50_ms - p50) / p50,
        # medians: the master's wall, its stages' compute, the gateway's side (up, invoke, down)
        "master_wall_p50_ms": statistics.median(a.report.wall_ms for a in answers),
        "master_compute_p50_ms": statistics.median(a.report.compute_ms for a in answers),
        "gateway_side_p50_ms": statistics.median(a.total_ms - a.report.wall_ms for a in answers),
        # per request, over the function runtime and instances: on a core, and waiting for one
        "functions_cpu_ms": sched.run_ms,
        "functions_wait_ms": sched.wait_ms,
        "load_average_1m": os.getloadavg()[0],
    }


def format_row(r: dict) -> str:
    return (
        f"{r['model']:<13} {r['plan']:<11} {r['memory_mb']:>5} {r['split_stages']:>6} "
        f"{r['predicted_p50_ms']:>9.1f} {r['measured_p50_ms']:>9.1f} {r['error_p50']:>+7.0%} "
        f"{r['predicted_p99_ms']:>9.1f} {r['measured_p99_ms']:>9.1f} "
        f"{r['master_compute_p50_ms']:>8.1f} {r['gateway_side_p50_ms']:>7.1f} "
        f"{r['functions_cpu_ms']:>7.1f} {r['functions_wait_ms']:>7.1f} {r['load_average_1m']:>5.1f}"
    )


# a measured p99 means a p99 from this many requests on (from fewer it is their slowest or so)
P99_MIN_SAMPLES = 100


def slo_check(row: dict, pred, slo: float, latency_rows: list[dict]) -> str:
    """Marks the cost plan's row with its SLO check; returns the note printed beside it. The
    SLO is feasible if a latency plan measured its p99 under it (else a miss says nothing of
    the model), and the p99 counts only from ``P99_MIN_SAMPLES`` requests on."""
    over = sum(1 for t in row["latencies_ms"] if t > slo)
    share = 1.0 - NormalDist(pred.mean_ms, max(pred.var_ms2, 1e-9) ** 0.5).cdf(slo)
    best = min(latency_rows, key=lambda r: r["measured_p99_ms"], default=None)
    row.update(
        slo_ms=slo,
        meets_slo_p99=row["measured_p99_ms"] <= slo,
        over_slo=over,
        predicted_share_over_slo=share,
        p99_means_p99=row["samples"] >= P99_MIN_SAMPLES,
        slo_feasible=best is not None and best["measured_p99_ms"] <= slo,
    )
    note = f"  SLO {slo:.0f} ms: measured p99 "
    note += "meets it" if row["meets_slo_p99"] else "MISSES it"
    note += f" ({over} of {row['samples']} requests over it; model {share:.1%})"
    if not row["p99_means_p99"]:
        note += f" [p99 of < {P99_MIN_SAMPLES} requests: in effect their slowest]"
    note += _when_over(row, slo)
    if best is not None:
        feasible = "feasible" if row["slo_feasible"] else "NOT shown feasible"
        note += f"; {feasible}: {best['plan']} measured p99 {best['measured_p99_ms']:.0f} ms"
    return note


def _when_over(row: dict, slo: float) -> str:
    """When the over-SLO requests came, within the run: a p99 read from 100 requests sent one
    after another in a few seconds counts one of the host's slow episodes (seconds long, a few
    per cent of the time) as many requests, where the model's p99 is of requests spread over
    time (MobileNetV2, 1 Dec: 15 of 100 over, all in one second of a 2.5 s run)."""
    at = [r["at_s"] for r in row.get("requests", ())]
    over = sorted(r["at_s"] for r in row.get("requests", ()) if r["total_ms"] > slo)
    if len(over) < 2 or not at:
        return ""
    row.update(over_slo_span_s=over[-1] - over[0], run_span_s=max(at) - min(at))
    return f"; those over it came within {row['over_slo_span_s']:.1f} s of the run's {row['run_span_s']:.1f} s"
