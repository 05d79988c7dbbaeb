"""The autoscaling benchmark's accounting and printing: per pair SLO attainment (overall and in
the step), latencies, paths, VM-seconds, function GB-s and cost per 1,000 requests; the replica
timeline; the errors; and where the step's misses come from (path, routing reason, cold start,
and when in the step they were sent)."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import numpy as np

from policies.costs import PriceTable


def ledger_reasons(ledger: Path) -> dict[str, str]:
    """Request id -> routing reason, from a pair's ledger (empty when there is none)."""
    if not ledger.exists():
        return {}
    with sqlite3.connect(ledger) as db:
        return dict(db.execute("SELECT id, reason FROM requests"))


def step_misses(recs: list, shape, reasons: dict[str, str], every_s: float = 5.0) -> dict:
    """Requests sent in the step that missed the SLO: by path, reason and cold start, and per
    ``every_s`` since the step began (where in the step they fall)."""
    by_kind: dict[str, int] = {}
    by_time: dict[str, int] = {}
    for r in recs:
        since_s = r.sent_s - shape.steady_s
        if not 0 <= since_s < shape.step_s or (r.status == 200 and r.latency_ms <= shape.slo_ms):
            continue
        reason = reasons.get(r.request_id, "?")
        kind = f"{r.path} {reason}{' cold' if r.cold_starts else ''}"
        if r.status != 200:
            kind = f"error {r.status} {reason}"
        by_kind[kind] = by_kind.get(kind, 0) + 1
        bucket = f"{int(since_s // every_s) * every_s:g}s"
        by_time[bucket] = by_time.get(bucket, 0) + 1
    return {"by_kind": by_kind, "by_time": by_time}


def summarize(
    name: str, run, before: dict, after: dict, shape, prices: PriceTable, reasons: dict
) -> dict:
    # size: one row of the table, every figure of a pair computed in one place
    recs = run.records
    lat = np.array([r.latency_ms for r in recs if r.status == 200])
    ok_in_slo = [r.status == 200 and r.latency_ms <= shape.slo_ms for r in recs]
    step = [
        ok
        for r, ok in zip(recs, ok_in_slo, strict=True)
        if shape.steady_s <= r.sent_s < shape.steady_s + shape.step_s
    ]
    vm_s = 0.0
    for (t0, *_), (t1, _d, ready, booting, draining) in zip(
        run.samples, run.samples[1:], strict=False
    ):
        vm_s += (ready + booting + draining) * (t1 - t0)  # billed from boot request to stop
    billed_s = (
        after["tidegate_function_billed_seconds_total"]
        - before["tidegate_function_billed_seconds_total"]
    )
    warm_usd = (
        after["tidegate_warm_functions_cost_usd_total"]
        - before["tidegate_warm_functions_cost_usd_total"]
    )
    gb_s = billed_s * shape.memory_mb / 1024.0
    fn_usd = sum(r.cost_usd for r in recs if r.path == "burst")
    vm_usd = vm_s * prices.vm_usd_per_hour / 3600.0
    cost = vm_usd + fn_usd + warm_usd
    paths: dict[str, int] = {}
    errors: dict[str, int] = {}
    for r in recs:
        key = r.path if r.status == 200 else f"error {r.status}"
        paths[key] = paths.get(key, 0) + 1
        if r.status != 200:
            what = f"{r.status} {r.error}"
            errors[what] = errors.get(what, 0) + 1
    return {
        "policy": name,
        "requests": len(recs),
        "slo_ms": shape.slo_ms,
        "slo_attainment": sum(ok_in_slo) / max(len(recs), 1),
        "step_slo_attainment": sum(step) / max(len(step), 1),
        "p50_ms": float(np.percentile(lat, 50)) if len(lat) else math.nan,
        "p99_ms": float(np.percentile(lat, 99)) if len(lat) else math.nan,
        "paths": paths,
        "errors": errors,
        "error_sent_s": [round(r.sent_s, 1) for r in recs if r.status != 200],
        "vm_seconds": vm_s,
        "function_gb_s": gb_s,
        "vm_usd": vm_usd,
        "function_usd": fn_usd,
        "warm_usd": warm_usd,
        "cost_usd": cost,
        "cost_per_1000_usd": cost / max(len(recs), 1) * 1000,
        "replicas": [list(map(lambda v: round(v, 1), s)) for s in run.samples],
        "timeline": timeline(run.samples),
        "per_10s": per_bucket(recs, shape.slo_ms),
        "step_misses": step_misses(recs, shape, reasons),
    }


def per_bucket(recs: list, slo_ms: float, every_s: float = 10.0) -> list[dict]:
    """Per ``every_s`` of sending: requests by path, their p99 and the share within the SLO."""
    out = []
    for k in range(int(max((r.sent_s for r in recs), default=0) // every_s) + 1):
        b = [r for r in recs if k * every_s <= r.sent_s < (k + 1) * every_s]
        row: dict = {"t_s": k * every_s, "requests": len(b)}
        for path in ("vm", "burst"):
            lat = [r.latency_ms for r in b if r.path == path and r.status == 200]
            row[path] = len(lat)
            row[f"{path}_p99_ms"] = round(float(np.percentile(lat, 99)), 1) if lat else None
        ok = sum(r.status == 200 and r.latency_ms <= slo_ms for r in b)
        row["in_slo"] = round(ok / max(len(b), 1), 4)
        out.append(row)
    return out


def timeline(samples: list[tuple], every_s: float = 10.0) -> str:
    """VMs up or booting, the most in each ``every_s`` of the run: one digit per bucket."""
    buckets: dict[int, int] = {}
    for t, _desired, ready, booting, _draining in samples:
        k = int(t // every_s)
        buckets[k] = max(buckets.get(k, 0), int(ready + booting))
    return "".join(str(min(buckets.get(k, 0), 9)) for k in range(max(buckets, default=-1) + 1))


def print_table(rows: list[dict], peak: dict, shape) -> None:
    print(
        f"\nsteady {shape.steady_rate:.1f} req/s (half of one replica), step to "
        f"{4 * shape.steady_rate:.1f} req/s for {shape.step_s:g} s; SLO {shape.slo_ms:g} ms; "
        f"boot delay {shape.boot_delay_s:g} s"
    )
    print(
        f"{'policy':<22}{'reqs':>6}{'SLO%':>8}{'step%':>8}{'p50ms':>8}{'p99ms':>8}"
        f"{'vm':>6}{'burst':>6}{'err':>5}{'VM-s':>6}{'GB-s':>7}{'warm$':>9}{'$/1k':>10}"
        f"  VMs per {10:g} s"
    )
    for r in rows:
        err = sum(v for k, v in r["paths"].items() if k.startswith("error"))
        print(
            f"{r['policy']:<22}{r['requests']:>6}{100 * r['slo_attainment']:>8.2f}"
            f"{100 * r['step_slo_attainment']:>8.2f}{r['p50_ms']:>8.0f}{r['p99_ms']:>8.0f}"
            f"{r['paths'].get('vm', 0):>6}{r['paths'].get('burst', 0):>6}{err:>5}"
            f"{r['vm_seconds']:>6.0f}{r['function_gb_s']:>7.1f}{r['warm_usd']:>9.5f}"
            f"{r['cost_per_1000_usd']:>10.6f}  {r['timeline']}"
        )
    print(
        f"{'VMs for the peak':<22}{'':>6}{'':>8}{'':>8}{'':>8}{'':>8}{'':>6}{'':>6}{'':>5}"
        f"{peak['vms'] * shape.duration_s:>6.0f}{0:>7.1f}{0:>9.5f}"
        f"{peak['cost_per_1000_usd']:>10.6f}  {str(peak['vms']) * len(rows[0]['timeline'] if rows else '')}"
    )


def print_errors(rows: list[dict], kept: Path | None) -> None:
    """Per pair: the step's misses by kind and by time, failed requests by status and answer."""
    for r in rows:
        misses = r["step_misses"]
        if misses["by_kind"]:
            kinds = ", ".join(f"{k}: {n}" for k, n in sorted(misses["by_kind"].items()))
            times = ", ".join(f"{k}: {n}" for k, n in misses["by_time"].items())
            print(f"{r['policy']}: step misses by path/reason: {kinds}")
            print(f"  by time since the step began: {times}")
        if not r["errors"]:
            continue
        sent = r["error_sent_s"]
        print(
            f"{r['policy']}: {sum(r['errors'].values())} errors, sent {min(sent):.0f}-{max(sent):.0f} s"
        )
        for what, n in sorted(r["errors"].items(), key=lambda kv: -kv[1]):
            print(f"  {n:>5}  {what[:160]}")
    if kept is not None:
        print(f"gateway, replica and function-runtime logs: {kept}")
