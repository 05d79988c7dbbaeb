"""The tenant report over a large ledger: before (every row a Python tuple) and after (sums in
SQL, latencies as numpy arrays), for the endpoint's code path and ``tidegate report``.

Writes a generated SQLite ledger (``--rows``, default 1,000,000: tenants, models, paths, days,
statuses, many small costs), then runs each case in its own process, alternating old and new:
wall time of one report, then its peak Python memory (tracemalloc, numpy included) and the
process's peak RSS. Prints a table and writes JSON (ops/bench/results/report_scale.json).

    python ops/bench/report_scale.py --rows 1000000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import subprocess
import sys
import time
import tracemalloc
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from gateway.ledger import make_backend  # noqa: E402
from gateway.ledger.row import COLUMNS  # noqa: E402
from gateway.reports import GROUP_KEYS, Report, ReportFilter, Usage, build_report  # noqa: E402
from policies.costs import PriceTable  # noqa: E402

T0 = 1_780_000_000.0
OLD_COLUMNS = (
    "tenant, model, path, status, latency_ms, ts, workers, vm_cost_usd, function_cost_usd, "
    "store_cost_usd, cost_usd"
)


def generate(path: Path, n: int, seed: int = 1, days: int = 5) -> None:
    """n rows over 6 tenants, 3 models, vm/burst/reject, ``days`` UTC days."""
    backend = make_backend(str(path), sqlite_synchronous="OFF")
    backend.migrate()
    rng = random.Random(seed)
    tenants, models = [f"t{i}" for i in range(6)], ["mlp", "resnet18", "bert"]
    chunk: list[tuple] = []
    for i in range(n):
        path_ = rng.choices(("vm", "burst", "reject"), (70, 25, 5))[0]
        status = 429 if path_ == "reject" else rng.choices((200, 503, 400), (95, 3, 2))[0]
        ok = status == 200
        vm = rng.uniform(1e-8, 6e-6) if ok and path_ == "vm" else 0.0
        fn = rng.uniform(1e-7, 9e-5) if ok and path_ == "burst" else 0.0
        store = rng.uniform(0, 2e-6) if fn else 0.0
        values = {
            "id": f"r{i}",
            "ts": T0 + i * days * 86400.0 / n,
            "tenant": rng.choice(tenants),
            "model": rng.choice(models),
            "path": path_,
            "status": status,
            "latency_ms": rng.lognormvariate(4.0, 0.8),
            "batch_size": 1,
            "workers": rng.choice((0, 2, 4)) if fn else 0,
            "cold_starts": 0,
            "vm_cost_usd": vm,
            "function_cost_usd": fn,
            "store_cost_usd": store,
            "cost_usd": vm + fn + store,
            "billed_ms": 0,
            "detail": "",
            "reason": "",
        }
        chunk.append(tuple(values[c] for c in COLUMNS))
        if len(chunk) == 50_000:
            backend.write(chunk)
            chunk = []
    if chunk:
        backend.write(chunk)
    backend.close()


# --- the report as it was (commit a6400ac): every row of the window a tuple ---------------------


def old_report(query, filt, slo_ms, prices=None, vm_bill_usd=None) -> Report:
    """``fetch_rows`` + ``build_report`` before this change (the reference for equality)."""
    prices = prices or PriceTable()
    rows = _old_fetch(query, filt)
    busy_all = None
    if filt.tenant and vm_bill_usd is not None:
        busy_all = sum(r[7] for r in _old_fetch(query, ReportFilter(None, *_span(filt))))
    by_tenant: dict[str, list[tuple]] = {}
    for row in rows:
        by_tenant.setdefault(row[0], []).append(row)
    ledger_total = math.fsum(r[10] for r in rows)
    busy_mine = math.fsum(r[7] for r in rows)
    busy = busy_all if busy_all is not None else busy_mine
    idle = max(vm_bill_usd - busy, 0.0) if vm_bill_usd is not None else 0.0
    tenants, groups = {}, []
    for tenant in sorted(by_tenant):
        trows = by_tenant[tenant]
        share = math.fsum(r[7] for r in trows) / busy if busy > 0 else 0.0
        tenants[tenant] = _old_usage(trows, slo_ms, prices, idle * share)
        if filt.by:
            buckets: dict[tuple, list[tuple]] = {}
            for r in trows:
                buckets.setdefault(_old_key(r, filt.by), []).append(r)
            t_busy = math.fsum(r[7] for r in trows)
            for key, grows in sorted(buckets.items()):
                g_share = math.fsum(r[7] for r in grows) / t_busy if t_busy > 0 else 0.0
                u = _old_usage(grows, slo_ms, prices, idle * share * g_share)
                u.key = {"tenant": tenant, **dict(zip(filt.by, key, strict=True))}
                groups.append(u)
    if filt.tenant and filt.tenant not in tenants:
        tenants[filt.tenant] = Usage()
    return Report(filt, ledger_total, idle, tenants, groups)


def _span(filt) -> tuple:
    return filt.since_ts, filt.until_ts


def _old_fetch(query, filt) -> list[tuple]:
    where, params = [], []
    if filt.tenant:
        where.append("tenant = {p}")
        params.append(filt.tenant)
    if filt.since_ts is not None:
        where.append("ts >= {p}")
        params.append(filt.since_ts)
    if filt.until_ts is not None:
        where.append("ts < {p}")
        params.append(filt.until_ts)
    sql = f"SELECT {OLD_COLUMNS} FROM requests"
    if where:
        sql += " WHERE " + " AND ".join(where)
    return query(sql + " ORDER BY ts", tuple(params))


def _old_key(row: tuple, by: tuple) -> tuple:
    day = datetime.fromtimestamp(row[5], timezone.utc).strftime("%Y-%m-%d")
    values = {"model": row[1], "path": row[2], "day": day}
    return tuple(values[k] for k in by)


def _old_usage(rows, slo_ms, prices, idle_usd) -> Usage:
    status = np.array([r[3] for r in rows])
    latency = np.array([r[4] for r in rows], dtype=float)
    ok = (status >= 200) & (status < 300)
    counted = ok | (status >= 500)
    limits = np.array([slo_ms(r[0], r[1]) for r in rows], dtype=float)
    met = ok & (latency <= limits)

    def invocations(row) -> int:
        workers = int(row[6] or 0)
        return workers + 1 if workers > 1 else 1

    fees = math.fsum(
        min(invocations(r) * prices.fn_usd_per_request, r[8]) for r in rows if r[8] > 0
    )
    u = Usage(
        requests=len(rows),
        answered=int(ok.sum()),
        slo_attainment=float(met.sum() / counted.sum()) if counted.any() else None,
        p50_ms=float(np.percentile(latency[ok], 50)) if ok.any() else None,
        p99_ms=float(np.percentile(latency[ok], 99)) if ok.any() else None,
        vm_usd=math.fsum(r[7] for r in rows),
        idle_vm_usd=idle_usd,
        function_compute_usd=math.fsum(r[8] for r in rows) - fees,
        function_requests_usd=fees,
        store_usd=math.fsum(r[9] for r in rows),
    )
    u.cost_usd = math.fsum(r[10] for r in rows) + idle_usd
    return u


# --- one case, in its own process ------------------------------------------------------------


def slo_ms(tenant: str, model: str) -> float:
    return {"mlp": 60.0, "resnet18": 90.0, "bert": 150.0}.get(model, 500.0)


def _one(case: str, ledger: Path) -> dict:
    from ops.report import RENDERERS, open_ledger

    query = open_ledger(None, str(ledger))
    filt = ReportFilter(None, None, None, tuple(k for k in GROUP_KEYS))
    build = old_report if case.startswith("old") else build_report

    def run() -> None:
        report = build(query, filt, slo_ms, vm_bill_usd=50.0)
        if case.endswith("cli"):
            RENDERERS["json"](report)
        else:
            json.dumps(report.as_dict())

    start = time.perf_counter()
    run()
    wall = time.perf_counter() - start
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tracemalloc.start()
    run()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"case": case, "wall_s": wall, "py_peak_mb": peak / 2**20, "max_rss_mb": rss_mb}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--ledger", default="/tmp/tidegate-report-scale.sqlite")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(ROOT / "ops/bench/results/report_scale.json"))
    args = parser.parse_args()
    ledger = Path(args.ledger)
    if args.one:
        print(json.dumps(_one(args.one, ledger)))
        return
    if not ledger.exists():
        generate(ledger, args.rows)
    results = []
    for _ in range(args.repeat):
        for case in ("old-endpoint", "new-endpoint", "old-cli", "new-cli"):
            cmd = [sys.executable, __file__, "--ledger", str(ledger), "--one", case]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            results.append({**json.loads(out), "load": os.getloadavg()[0]})
    print(f"{'case':14} {'wall s':>8} {'py peak MB':>11} {'max RSS MB':>11} {'load':>5}")
    for r in results:
        print(
            f"{r['case']:14} {r['wall_s']:8.2f} {r['py_peak_mb']:11.1f} {r['max_rss_mb']:11.1f}"
            f" {r['load']:5.2f}"
        )
    doc = {"rows": args.rows, "ledger": str(ledger), "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(doc))


if __name__ == "__main__":
    main()
