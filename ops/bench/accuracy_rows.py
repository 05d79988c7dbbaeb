"""Rows of ``ops/bench/plan_accuracy.py``: a measured plan against its prediction, and how
one is printed."""

from __future__ import annotations

import os
import statistics

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
